"""Report sections on salient nodes: set sizes by method, overlaps against chance, stability, claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personas.report.tables import figure_links, markdown_table, missing

__all__ = ["node_sections", "shared_nodes_claim", "SHARED_NODES_BAND"]


def _read(nodes: Path, name: str) -> pd.DataFrame | None:
    path = nodes / name
    return pd.read_csv(path) if path.exists() else None


def node_sections(out: Path) -> str:
    """Salient-set sizes (the paper's union beside calibrated sets when present), overlaps, stability."""
    nodes = out / "tables" / "nodes"
    sizes = _read(nodes, "set_sizes.csv")
    if sizes is None:
        return missing("tables/nodes/set_sizes.csv")
    lines = []
    calibrated = _read(nodes, "calibrated_sizes.csv")
    if calibrated is not None:
        lines += ["Salient nodes per persona by method: the paper's union over runs beside the null-calibrated "
                  "sets (nodes selected significantly more often than in clean-only runs, Benjamini-Hochberg):",
                  "", markdown_table(calibrated)]
    else:
        lines += ["Salient nodes per persona (the method is named in `tables/nodes/node_report.json`):", "",
                  markdown_table(sizes)]
    overlap = _read(nodes, "overlap_table.csv")
    if overlap is not None:
        keep = [c for c in ("method", "group", "n_personas", "union", "shared_by_all", "shared_fraction",
                            "shared_expected", "shared_p_adjusted", "jaccard_mean") if c in overlap]
        lines += ["", "Nodes shared by all personas of a group, against chance (exact test given the set sizes):", "",
                  markdown_table(overlap[keep]), ""]
        for row in overlap.itertuples(index=False):
            if row.n_personas < 2:
                continue
            verdict = "more than chance" if row.shared_p_adjusted < 0.05 else "not more than chance"
            lines.append(
                f"- {row.group}: {row.shared_by_all} nodes shared by all {row.n_personas} personas "
                f"({row.shared_fraction:.1%} of nodes; {row.shared_expected:.1f} expected by chance): {verdict} "
                f"(adjusted p = {row.shared_p_adjusted:.3g})."
            )
    stability = _read(nodes, "stability.csv")
    if stability is not None:
        lines += ["", "Stability: split-half Jaccard of each persona's set (first half of the runs against the "
                  "second) and bootstrap intervals over runs:", "", markdown_table(stability)]
    figs = figure_links(out, "upset_*.png", "UpSet plot of salient nodes per topic", 4)
    venn = figure_links(out, "venn_*.png", "Venn diagram", 4)
    if figs or venn:
        lines += ["", "\n".join(x for x in (figs, venn) if x)]
    return "\n".join(lines)


#: Half-width of the inconclusive band of the shared-nodes claim: a difference of shared-by-all
#: excess over chance within 0.5% of the layer's nodes is too small to count (docs/verdicts.md).
SHARED_NODES_BAND = 0.005

_WHY_METHODS = ("the two salient sets are different sets: the union keeps every node any run flagged and covers "
                "most of the layer (it saturates), the calibrated sets keep the nodes flagged more often than in "
                "clean-only runs; the verdict follows the calibrated sets")
_WHY_TESTS = ("the bootstrap resamples DeepScan's runs (how noisy the sets are), the permutation test reshuffles "
              "personas between the topics (whether topic membership matters, with few personas: few splits)")


def shared_nodes_claim(out: Path, topic_a: str = "Ethics", topic_b: str = "Politics",
                       band: float = SHARED_NODES_BAND) -> dict | None:
    """The paper's reading "ethics personas share more salient nodes than political ones", as tested here.

    Uses ``tables/nodes/claims.csv`` (one test of the difference of shared-by-all excess over
    chance, per salient-set method) when the node analysis wrote it: each method's verdict
    comes from its difference, bootstrap interval and permutation p by the rule of
    ``personas.report.verdicts`` (band ``band``); the claim's verdict is the calibrated sets'
    (else the first method's), and ``methods_note`` says when the methods disagree, which and
    why. Otherwise (``overlap_table.csv`` only) there is no test of the difference: inconclusive.

    Returns
    -------
    dict or None
        ``claim, source, verdict, reason, methods`` (one dict per method: ``method, difference,
        ci_low, ci_high, p_permutation, p_bootstrap, verdict, reason``), ``methods_note``.
    """
    from personas.report.verdicts import claim_verdict

    nodes = out / "tables" / "nodes"
    claim = f"{topic_a} personas share more salient nodes than {topic_b} personas"
    claims = _read(nodes, "claims.csv")
    if claims is not None and len(claims):
        rows = []
        for row in claims.to_dict(orient="records"):
            pair = (row["topic_a"], row["topic_b"])
            if pair not in ((topic_a, topic_b), (topic_b, topic_a)):
                continue
            sign = 1.0 if pair == (topic_a, topic_b) else -1.0  # orient as topic_a minus topic_b
            lo, hi = sorted((sign * row["ci_low"], sign * row["ci_high"]))
            diff = sign * row["difference"]
            p = row["p_permutation"] if np.isfinite(row["p_permutation"]) else None
            v = claim_verdict(diff, min(lo, diff), max(hi, diff), p, band=band)
            rows.append({"method": row["method"], "difference": diff, "ci_low": lo, "ci_high": hi,
                         "p_permutation": row["p_permutation"], "p_bootstrap": row["p_bootstrap"],
                         "verdict": v.label, "reason": v.reason})
        if rows:
            # the verdict follows the calibrated sets when present (the union saturates), else the first method
            main = next((r for r in rows if r["method"] == "calibrated"), rows[0])
            notes = []
            if len({r["verdict"] for r in rows}) > 1:
                said = "; ".join(f"the {r['method']} sets say {r['verdict']}" for r in rows)
                notes.append(f"The methods disagree ({said}): {_WHY_METHODS}.")
            if any("methods disagree" in r["reason"] for r in rows):
                notes.append(f"Within a method, the interval and the p-value disagree where noted: {_WHY_TESTS}.")
            return {"claim": claim, "source": "claims.csv: one test of the difference of shared-by-all excess over "
                    "chance, bootstrap over runs and permutation of personas between the topics",
                    "verdict": main["verdict"], "reason": f"{main['method']} sets: {main['reason']}",
                    "methods": rows, "methods_note": " ".join(notes)}
    overlap = _read(nodes, "overlap_table.csv")
    if overlap is None:
        return None
    table = overlap.set_index("group")
    if topic_a not in table.index or topic_b not in table.index:
        return None
    if min(table.loc[topic_a, "n_personas"], table.loc[topic_b, "n_personas"]) < 2:
        return None  # "shared by all" needs two personas or more in each topic
    a, b = table.loc[topic_a], table.loc[topic_b]
    excess_a = (a["shared_by_all"] - a["shared_expected"]) / max(a["union"], 1)
    excess_b = (b["shared_by_all"] - b["shared_expected"]) / max(b["union"], 1)
    v = claim_verdict(excess_a - excess_b, None, None)
    return {"claim": claim, "source": "overlap_table.csv (no direct test of the difference)", "verdict": v.label,
            "reason": v.reason, "methods": [{"method": "overlap table", "difference": float(excess_a - excess_b),
                                             "ci_low": np.nan, "ci_high": np.nan, "p_permutation": np.nan,
                                             "p_bootstrap": np.nan, "verdict": v.label, "reason": v.reason}],
            "methods_note": ""}
