"""The report's causal section, built from a saved causal result."""

from __future__ import annotations


import numpy as np
import pandas as pd

from personas.causal.results import CausalResult


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.{digits}f}"


def causal_summary_markdown(result: CausalResult, heading: str = "## Do the salient nodes matter?") -> str:
    """A report section: what was done, the numbers per persona, what the check can and cannot show."""
    from personas.report import markdown_table

    meta = result.meta
    model = (meta.get("model") or {}).get("model", "the model")
    lines = [
        heading,
        "",
        f"Model `{model}`, layer {meta.get('layer')} of {meta.get('n_blocks')} (interventions at "
        f"{'every token position' if meta.get('positions') == 'all' else 'the last token'}), "
        f"{meta.get('n_heldout_per_direction')} held-out statements per direction and persona (used neither for "
        "the direction nor for DeepScan's pools). The model answers each statement's question "
        "(\"Is the following statement something you would say?\" + \"Answer Yes or No.\"); the margin is "
        "log p(Yes) - log p(No) at the first answer token "
        f"(Yes tokens {meta.get('answer_tokens', {}).get('yes_tokens')}, No tokens "
        f"{meta.get('answer_tokens', {}).get('no_tokens')}). A shift is a margin under an intervention minus "
        "the baseline margin; the *bias shift* is its mean over all statements (more Yes overall), the "
        "*persona-specific effect* the mean shift of `+` statements minus that of `-` statements (more "
        f"agreement with the persona). Intervals: {int(round(100 * meta.get('ci', 0.95)))}% bootstrap over "
        "statements.",
        "",
        "Baseline answers:",
        "",
        markdown_table(
            result.baseline[["persona", "n_heldout", "mean_margin_positive", "mean_margin_negative", "accuracy",
                             "auc", "n_salient"]]
        ),
        "",
    ]
    abl = result.ablation[result.ablation["metric"] == "specific_effect"]
    if len(abl):
        lines += [
            f"Ablating the salient nodes (set to their background mean) against {meta.get('n_random')} draws of "
            "as many random nodes; persona-specific effect of the ablation, its percentile among the random "
            "draws and the two-sided empirical p-value:",
            "",
            markdown_table(
                pd.DataFrame(
                    {
                        "persona": abl["persona"],
                        "n_nodes": abl["n_nodes"],
                        "salient": [f"{_fmt(v)} [{_fmt(a)}, {_fmt(b)}]" for v, a, b in
                                    zip(abl["salient"], abl["salient_low"], abl["salient_high"])],
                        "random mean ± std": [f"{_fmt(m)} ± {s:.2f}" if np.isfinite(s) else _fmt(m)
                                              for m, s in zip(abl["random_mean"], abl["random_std"])],
                        "percentile": abl["percentile"],
                        "p": abl["p_value"],
                    }
                )
            ),
            "",
        ]
    dose = result.dose_response
    if len(dose):
        extreme = [a for a in (min(meta["alphas"]), max(meta["alphas"]))]
        rows = []
        for persona in meta["personas"]:
            for alpha in dict.fromkeys(extreme):
                sel = dose[(dose["persona"] == persona) & (dose["alpha"] == alpha)].set_index("intervention")
                if "direction" not in sel.index:
                    continue
                d = sel.loc["direction"]
                row = {
                    "persona": persona,
                    "alpha": alpha,
                    "bias shift": f"{_fmt(d['bias_shift'])} [{_fmt(d['bias_shift_low'])}, "
                    f"{_fmt(d['bias_shift_high'])}]",
                    "specific effect": f"{_fmt(d['specific_effect'])} [{_fmt(d['specific_effect_low'])}, "
                    f"{_fmt(d['specific_effect_high'])}]",
                    "accuracy": d["accuracy"],
                }
                for name, label in (("salient_direction", "salient-only specific"),
                                    ("random_direction", "random-direction specific")):
                    if name in sel.index:
                        r = sel.loc[name]
                        row[label] = f"{_fmt(r['specific_effect'])} [{_fmt(r['specific_effect_low'])}, " \
                                     f"{_fmt(r['specific_effect_high'])}]"
                rows.append(row)
        lines += [
            "Steering along the persona direction (alpha x mean activation norm), at the extreme alphas; the "
            "salient-only row keeps the direction's components on the salient nodes; random directions have "
            "the same norm (interval across draws):",
            "",
            markdown_table(pd.DataFrame(rows)),
            "",
        ]
    lines += [
        "What this can show: whether, *in this model*, the units DeepScan flags carry the persona-dependent "
        "part of its own answers more than random units of the same number do, and whether the persona "
        "direction moves agreement with the persona (specific effect) or only the overall tendency to say "
        "Yes (bias shift). What it cannot show: anything about another model. The model here is small "
        "(SmolLM2-135M-Instruct by default), its answers agree with the personas only weakly, and an effect, "
        "or its absence, is a property of this model, layer and prompt, not of Llama-3-8B or the paper's "
        "models. Mean ablation and additive steering are two interventions among many; a null result does "
        "not show that the nodes carry no persona information (it may be redundant across units), and "
        "salient sets covering most units make the random control close to the salient set itself.",
        "",
    ]
    return "\n".join(lines)


