"""Report sections on salient nodes: set sizes by method, overlaps against chance, stability, claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personas.report.tables import figure_links, markdown_table, missing

__all__ = ["node_sections", "shared_nodes_claim"]


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


def shared_nodes_claim(out: Path, topic_a: str = "Ethics", topic_b: str = "Politics") -> dict | None:
    """The paper's reading "ethics personas share more salient nodes than political ones", as tested here.

    Uses ``tables/nodes/claims.csv`` (one test of the difference of shared-by-all excess over
    chance) when the node analysis wrote it; otherwise compares the two topics' rows of the
    overlap table, each against its own chance level.
    """
    nodes = out / "tables" / "nodes"
    claims = _read(nodes, "claims.csv")
    if claims is not None and len(claims):
        rows = []
        for row in claims.to_dict(orient="records"):
            pair = (row["topic_a"], row["topic_b"])
            if pair not in ((topic_a, topic_b), (topic_b, topic_a)):
                continue
            sign = 1.0 if pair == (topic_a, topic_b) else -1.0  # orient as topic_a minus topic_b
            lo, hi = sorted((sign * row["ci_low"], sign * row["ci_high"]))
            rows.append({"method": row["method"], "difference": sign * row["difference"], "ci_low": lo,
                         "ci_high": hi, "p_permutation": row["p_permutation"], "p_bootstrap": row["p_bootstrap"]})
        if rows:
            # the verdict follows the calibrated sets when present (the union saturates), else the first method
            main = next((r for r in rows if r["method"] == "calibrated"), rows[0])
            p = main["p_permutation"]
            if np.isfinite(p) and p < 0.05:
                verdict = "supported" if main["difference"] > 0 else f"contradicted: {topic_b} personas share more"
            else:
                verdict = "not supported: no significant difference"
            detail = {f"{r['method']}: excess difference ({topic_a} - {topic_b})": r["difference"] for r in rows}
            for r in rows:
                detail[f"{r['method']}: 95% interval"] = f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
                detail[f"{r['method']}: permutation p"] = r["p_permutation"]
            return {"claim": f"{topic_a} personas share more salient nodes than {topic_b} personas",
                    "source": "claims.csv: one test of the difference of shared-by-all excess over chance, "
                              "permuting personas between the topics", "verdict": verdict, **detail}
    overlap = _read(nodes, "overlap_table.csv")
    if overlap is None:
        return None
    rows = overlap.set_index("group")
    if topic_a not in rows.index or topic_b not in rows.index:
        return None
    if min(rows.loc[topic_a, "n_personas"], rows.loc[topic_b, "n_personas"]) < 2:
        return None  # "shared by all" needs two personas or more in each topic
    a, b = rows.loc[topic_a], rows.loc[topic_b]
    excess_a = (a["shared_by_all"] - a["shared_expected"]) / max(a["union"], 1)
    excess_b = (b["shared_by_all"] - b["shared_expected"]) / max(b["union"], 1)
    verdict = ("supported" if excess_a > excess_b and a["shared_p_adjusted"] < 0.05 else "not supported")
    return {
        "claim": f"{topic_a} personas share more salient nodes than {topic_b} personas",
        "source": "overlap_table.csv (no direct test of the difference)",
        f"{topic_a} shared": int(a["shared_by_all"]), f"{topic_a} expected": float(a["shared_expected"]),
        f"{topic_b} shared": int(b["shared_by_all"]), f"{topic_b} expected": float(b["shared_expected"]),
        "verdict": verdict,
    }
