"""The report's causal section, built from a saved causal result (``load_causal_result``).

Every sentence comes from the result's tables and metadata: the model is the one its
metadata names, a readout the gate marks uninformative gets no causal conclusion, and an
interval is described by whether it excludes 0 (never "no significant difference" beside
an interval that excludes 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from personas.causal.results import CausalResult
from personas.causal.text_tables import steered_text_examples
from personas.report.tables import fmt, markdown_table

ARM_LABELS = {
    "direction": "persona direction",
    "salient_ablation": "salient nodes ablated",
    "salient_direction": "direction on the salient nodes only",
}
CONTROL_LABELS = {
    "random_direction": "random directions, same norm",
    "random_ablation": "as many random nodes ablated",
    "top_variance_ablation": "as many top-variance nodes ablated",
    "random_restricted_direction": "direction on as many random nodes",
}


def _fmt(x) -> str:
    return fmt(x, "+.2f")


def _interval(v, lo, hi) -> str:
    return f"{_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]"


def _excludes_zero(lo, hi) -> bool:
    return bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))


def _intro(meta: dict) -> list[str]:
    model = (meta.get("model") or {}).get("model", "the model")
    s = meta.get("settings", {})
    readouts = [f"`{r['name']}`: {r.get('summary', 'a user-supplied readout')}" for r in meta.get("readouts", [])]
    readouts += [f"`{name}`: not applicable: {why}" for name, why in (meta.get("not_applicable") or {}).items()]
    return [
        f"Model `{model}` (from the result's metadata), layer {meta.get('layer')} of {meta.get('n_blocks')}, "
        f"{s.get('n_heldout')} held-out statements per direction and persona (in neither DeepScan's pools nor the "
        f"direction's {s.get('n_train')} training statements per direction). Readouts: " + "; ".join(readouts) + ".",
        "",
        "The persona direction is the unit mean(+) - mean(-) of the training statements' hidden states at the "
        "layer, read as extraction reads them; a steering vector is alpha x their mean norm x that direction, "
        f"added at {'every token position' if s.get('edit_positions') == 'all' else 'the last token'}. A *shift* "
        "is a score under an intervention minus its baseline score; the *specific effect* is the mean shift of "
        "`+` statements minus that of `-` statements. Intervals: "
        f"{int(round(100 * s.get('ci', 0.95)))}% bootstrap over statements.",
        "",
    ]


def _file_directions(meta: dict) -> list[str]:
    """Which personas were steered along a direction from a file, where it came from, and its cosine with ours."""
    files = meta.get("file_directions") or []
    if not files:
        return []
    lines = ["**Directions from files.** These personas were steered along a direction read from a file instead of "
             "the mean difference of their training statements; their held-out statements, gate, steering scale "
             "(alpha x the mean norm of their training statements' hidden states), random directions and "
             "specificity row are the same as for a direction of ours. The cosine compares the file's direction "
             "with ours (unit mean(+) - mean(-) of the training statements) at the layer.", ""]
    per = meta.get("per_persona") or {}
    for persona in files:
        src = (per.get(persona) or {}).get("direction_source") or {}
        origin = ", ".join(f"{k} `{src[key]}`" for k, key in (("file", "file"), ("method", "method"),
                                                              ("model", "model"), ("model type", "model_type"))
                           if src.get(key))
        cosine = src.get("cosine_with_training_statements")
        lines.append(f"- {persona}: {origin or 'no provenance recorded'}; vector sha256 "
                     f"`{str(src.get('sha256', ''))[:16]}`; cosine with ours "
                     f"{'n/a' if cosine is None else f'{cosine:+.3f}'}.")
    only = meta.get("steering_only") or []
    if only:
        lines.append(f"- Steering arms only for {', '.join(only)}: no salient nodes were given, so no ablation or "
                     "restricted-direction arm was run.")
    skipped = meta.get("dose_skipped") or []
    if skipped:
        lines.append(f"- No dose response for {', '.join(skipped)}: a file's direction exists at the check's layer "
                     "only.")
    return lines + [""]


def _gate(result: CausalResult) -> list[str]:

    g = result.gate
    why = g["not_applicable"].fillna("") if "not_applicable" in g else pd.Series("", index=g.index)
    table = pd.DataFrame({
        "persona": g["persona"], "readout": g["readout"], "n": g["n_heldout"],
        "AUC [interval]": [f"not applicable: {w}" if w else f"{a:.3f} [{lo:.3f}, {hi:.3f}]"
                           for a, lo, hi, w in zip(g["auc"], g["auc_low"], g["auc_high"], why)],
        "informative": ["yes" if bool(x) else "no" for x in g["informative"]],
    })
    lines = ["**Gate.** Before any intervention, does each readout separate the held-out `+` statements from the "
             "`-` ones? A readout whose AUC interval contains 0.5 is *uninformative*: no intervention can show a "
             "persona-specific change in it, so no causal conclusion is drawn from it.", "",
             markdown_table(table), ""]
    bad = g[~g["informative"].astype(bool) & (why == "")]
    checked = result.meta.get("personas", [])
    skip = result.meta.get("settings", {}).get("skip_uninformative")
    for _, row in bad.iterrows():
        if row["persona"] not in checked:
            skipped = " (it is read in the specificity matrix only)"
        else:
            skipped = " and its interventions were not run" if skip else ""
        lines.append(f"- `{row['readout']}` is uninformative for {row['persona']} (AUC {row['auc']:.3f}, interval "
                     f"[{row['auc_low']:.3f}, {row['auc_high']:.3f}] contains 0.5){skipped}: no causal conclusion "
                     "is drawn from it.")
    return lines + ([""] if len(bad) else [])


def _comparison_sentence(row, files=(), effect: str = "specific effect") -> str:
    where = "excludes 0" if _excludes_zero(row["effect_low"], row["effect_high"]) else "contains 0"
    alpha = "" if not np.isfinite(row["alpha"]) else f" at alpha {row['alpha']:+g}"
    label = ARM_LABELS[row["arm"]] + (" (from the file)" if row["persona"] in files and row["arm"] != "salient_ablation"
                                      else "")
    text = (f"- {row['persona']}, `{row['readout']}`, {label}{alpha}: {effect} "
            f"{_interval(row['effect'], row['effect_low'], row['effect_high'])} (interval {where}); "
            f"{CONTROL_LABELS[row['control']]}: ")
    if row["n_control"] > 1:
        beyond = abs(row["effect"]) > row["control_max_abs"]
        return text + (f"mean {_fmt(row['control_mean'])} ± {row['control_std']:.2f}, largest |effect| "
                       f"{row['control_max_abs']:.2f} over {int(row['n_control'])} draws; the arm is "
                       f"{'beyond every draw' if beyond else 'within the draws'} (percentile "
                       f"{row['percentile']:.0f}).")
    diff = "excludes 0" if _excludes_zero(row["difference_low"], row["difference_high"]) else "contains 0"
    return text + (f"{_fmt(row['control_mean'])}; difference "
                   f"{_interval(row['difference'], row['difference_low'], row['difference_high'])} "
                   f"(paired bootstrap, interval {diff}).")


def _effects(result: CausalResult) -> list[str]:
    c = result.comparisons
    if c.empty:
        return ["No intervention was run (no informative readout).", ""]
    layer, alphas = result.meta.get("layer"), result.meta.get("settings", {}).get("alphas", [])
    c = c[(c["layer"] == layer) & (c["alpha"].isna() | c["alpha"].isin(alphas))]
    informative = {(p, r) for p, r, ok in result.gate[["persona", "readout", "informative"]].itertuples(index=False)
                   if bool(ok)}
    keep = [(p, r) in informative for p, r in zip(c["persona"], c["readout"])]
    dropped = len(c) - sum(keep)
    c = c[keep]
    if c.empty:
        lines = ["No intervention on an informative readout was run at the check's layer."]
    else:
        lines = ["**Interventions against controls** (at the check's layer, informative readouts only):", ""]
        files = result.meta.get("file_directions") or ()
        lines += [_comparison_sentence(row, files) for _, row in c.iterrows()]
    if dropped:
        lines += ["", f"{dropped} comparison(s) on uninformative readouts are in `causal_comparisons.csv`; they carry "
                      "no conclusion."]
    return lines + [""]


def _specificity(result: CausalResult) -> list[str]:

    sp, test = result.specificity, result.specificity_test
    if sp.empty or test.empty:
        return []
    t = test.iloc[0]
    matrix = sp.pivot(index="steer_persona", columns="read_persona", values="specific_effect")
    order = list(dict.fromkeys(sp["steer_persona"]))
    matrix = matrix.loc[order, order].reset_index().rename(columns={"steer_persona": "steered along \\ read on"})
    readout = sp["readout"].iloc[0]
    gate = result.gate.set_index(["persona", "readout"])
    unread = [p for p in order if (p, readout) in gate.index and not bool(gate.loc[(p, readout), "informative"])]
    lines = [f"**Specificity.** Steering along each persona's direction (alpha {sp['alpha'].iloc[0]:+g}, readout "
             f"`{readout}`) and reading every persona's held-out statements: specific effect per cell.", "",
             markdown_table(matrix), "",
             f"Diagonal dominance (mean diagonal minus mean off-diagonal) {t['statistic']:+.3f}; row-permutation "
             f"p = {t['p_value']:.3g} ({int(t['n_permutations'])} permutations"
             f"{', all of them' if bool(t['exact']) else ''}). "
             + ("A small p says each direction moves its own persona's statements more than the others': it is "
                "not one generic axis." if t["p_value"] <= 0.05 else
                "The diagonal is not separated from the permuted rows at p <= 0.05: the directions are not shown "
                "to be persona-specific.")]
    if bool(t["exact"]) and 1 / t["n_permutations"] > 0.05:
        lines[-1] += (f" With k = {int(t['k'])} personas the smallest possible p is {1 / t['n_permutations']:.3g}: "
                      "at least 4 are needed for p <= 0.05.")
    files = [p for p in order if p in (result.meta.get("file_directions") or ())]
    if files:
        lines.append(f"Rows steered along a file's direction: {', '.join(files)}.")
    if unread:
        lines.append(f"Columns {unread} are uninformative under this readout (gate): their cells carry no conclusion.")
    return lines + [""]


def _dose(result: CausalResult) -> list[str]:

    d = result.dose_response
    if d.empty:
        return []
    rows = []
    for (persona, layer), g in d.groupby(["persona", "layer"], sort=False):
        for alpha in (g["alpha"].min(), g["alpha"].max()):
            sel = g[g["alpha"] == alpha].set_index("intervention")
            if "direction" not in sel.index:
                continue
            r = sel.loc["direction"]
            rnd = sel.loc["random_direction"] if "random_direction" in sel.index else None
            rows.append({"persona": persona, "layer": int(layer), "alpha": alpha,
                         "direction": _interval(r["specific_effect"], r["low"], r["high"]),
                         "random band": "n/a" if rnd is None else f"[{_fmt(rnd['low'])}, {_fmt(rnd['high'])}]"})
    return ["**Dose response** (specific effect against alpha at each layer; the figure shows every alpha, the "
            "random directions' band shaded). The extreme alphas:", "", markdown_table(pd.DataFrame(rows)), ""]


def _alpha(a) -> str:
    return "0" if a == 0 else f"{a:+g}"


def _text_intro(result: CausalResult) -> list[str]:
    m, s = result.meta.get("steered_text") or {}, result.meta.get("settings", {})
    n_random, ci = m.get("n_random", s.get("n_text_random")), int(round(100 * s.get("ci", 0.95)))
    return [
        f"**Steered text.** The model answers {len(m.get('prompts', []))} neutral prompts (greedy, at most "
        f"{m.get('max_new_tokens')} tokens) with alpha x the mean norm x the persona direction added at layer "
        f"{m.get('layer')} ({m.get('positions')} positions), alpha = ±{m.get('alpha', 0):g}, and along {n_random} "
        "random directions of the same norm (those of the readouts' steering arm). The texts are scored offline: "
        "the *persona score* is the log-odds of a logistic regression on all-MiniLM-L6-v2 embeddings of the "
        "check's training statements that a text reads like the `+` statements; the scorer is gated by its AUC on "
        "statements used nowhere else. Coherence: the text's mean NLL per token under the unsteered model "
        "(higher = less expected) and distinct-2 (distinct word bigrams; lower = more repetitive). A *shift* is a "
        f"text's value minus that of the unsteered text of the same prompt; intervals: {ci}% bootstrap over prompts.",
        ""]


def _text_gate(gate: pd.DataFrame) -> list[str]:
    note = gate["note"].astype(object).where(gate["note"].notna(), "") if "note" in gate else \
        pd.Series("", index=gate.index)
    table = pd.DataFrame({
        "persona": gate["persona"], "scorer": gate["scorer"], "n": gate["n_positive"] + gate["n_negative"],
        "AUC [interval]": [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(a) else "n/a"
                           for a, lo, hi in zip(gate["auc"], gate["auc_low"], gate["auc_high"])],
        "informative": ["yes" if bool(x) else "no" for x in gate["informative"]]})
    lines = [markdown_table(table), ""]
    for _, row in gate[~gate["informative"].astype(bool)].iterrows():
        why = note[row.name] or "its AUC interval contains 0.5"
        lines.append(f"- The `{row['scorer']}` scorer is uninformative for {row['persona']} ({why}): no conclusion "
                     "is drawn from its scores.")
    return lines + ([""] if (~gate["informative"].astype(bool)).any() else [])


def _shift_cell(effects: pd.DataFrame, metric: str) -> str:
    sel = effects[effects["metric"] == metric]
    if sel.empty or not np.isfinite(sel["shift"].iloc[0]):
        return "n/a"
    return _interval(*sel.iloc[0][["shift", "shift_low", "shift_high"]])


def _text_effects(result: CausalResult) -> list[str]:
    e, rows = result.text_effects, []
    own = e[e["arm"] == "direction"]
    for (persona, alpha), g in own.groupby(["persona", "alpha"], sort=False):
        rnd = e[(e["persona"] == persona) & (e["alpha"] == alpha) & (e["arm"] == "random_direction")
                & (e["metric"] == "persona_score")]["shift"]
        rows.append({"persona": persona, "alpha": _alpha(alpha), "persona score shift": _shift_cell(g, "persona_score"),
                     "random directions": f"[{_fmt(rnd.min())}, {_fmt(rnd.max())}]" if len(rnd) else "n/a",
                     "NLL shift": _shift_cell(g, "nll"), "distinct-2 shift": _shift_cell(g, "distinct_2")})
    lines = ["Shifts along the persona direction (the random directions' persona-score shifts: smallest to "
             "largest draw; the NLL and distinct-2 shifts are the coherence cost):", "",
             markdown_table(pd.DataFrame(rows)), ""]
    c = result.text_comparisons
    if len(c):
        c = c[c["informative"].astype(bool)]
        lines += [_comparison_sentence(row, effect="mean shift of the score over prompts") for _, row in c.iterrows()]
        lines += ["No gated scorer is informative: the shifts carry no conclusion."] if c.empty else []
        lines.append("")
    return lines


def _text_sweep(sweep: pd.DataFrame) -> list[str]:
    if sweep.empty:
        return []
    cols = {"persona": "persona", "alpha": "alpha", "n_prompts": "prompts", "persona_score": "persona score",
            "nll": "NLL", "distinct_2": "distinct-2", "zlib_ratio": "zlib ratio", "n_tokens": "tokens"}
    table = sweep[[c for c in cols if c in sweep]].assign(alpha=[_alpha(a) for a in sweep["alpha"]])
    table = table.rename(columns=cols)
    return ["Alpha sweep along the persona direction (means over the prompts; where the NLL climbs and distinct-2 "
            "falls, the text stops being language):", "", markdown_table(table), ""]


def steered_text_markdown(result: CausalResult, n_prompts: int = 2, width: int = 160) -> list[str]:
    """The steered-text part of the causal section (lines): the scorers' gate, the shifts against the
    random directions, texts side by side, the alpha sweep. Empty when the arm did not run."""
    why = (result.meta.get("steered_text") or {}).get("not_applicable")
    if why:
        return [f"**Steered text.** Not applicable: {why}.", ""]
    if result.steered_text.empty:
        return []
    lines = _text_intro(result) + _text_gate(result.text_gate) + _text_effects(result)
    examples = steered_text_examples(result, n_prompts=n_prompts, width=width)
    if len(examples):
        side = examples[["persona", "prompt"]].copy()
        for label in [c[len("text "):] for c in examples.columns if c.startswith("text ")]:
            side[f"alpha {label}"] = [f"{t} ({_fmt(x)})" for t, x in zip(examples[f"text {label}"],
                                                                      examples[f"score {label}"])]
        lines += [f"Texts side by side (the first {n_prompts} prompts; the persona score after each text):", "",
                  markdown_table(side), ""]
    return lines + _text_sweep(result.text_sweep)


def causal_summary_markdown(result: CausalResult, heading: str = "## Do the salient nodes matter?") -> str:
    """A report section from a (saved) causal result: gate, effects against controls, specificity, dose
    response, steered text."""
    model = (result.meta.get("model") or {}).get("model", "the model")
    lines = ([heading, ""] if heading else []) + _intro(result.meta) + _file_directions(result.meta) \
        + _gate(result) + _effects(result) + _specificity(result) + _dose(result) + steered_text_markdown(result)
    lines += [
        f"What this can show: whether, in `{model}`, at this layer and with these readouts, the persona direction "
        "and the salient nodes change what the model says in a persona-specific way, beyond random and "
        "harder controls. What it cannot show: anything about another model, or that nodes whose ablation "
        "changes little carry no persona information (it may be spread over many units). Mean ablation and "
        "additive steering are two interventions among many.",
        "",
    ]
    return "\n".join(lines)
