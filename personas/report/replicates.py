"""The report's replicates section: each claim's verdict per statement-sampling seed, and their agreement.

``python -m personas.study --replicates N`` runs the study once per seed (the main study and
``replicates/seed-<s>/``) and writes ``replicates.json`` into the main study directory:
``{"seeds": [...], "dirs": {seed: directory relative to the study}, "store_keys": {seed: key
of the statement sample}}``. This section reads each seed's artifacts, computes its verdicts
with the same code as the main report, and gives the share of seeds that agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from personas._core.io import read_json
from personas.report.tables import markdown_table
from personas.report.verdicts import agreement

__all__ = ["REPLICATES_FILE", "REPLICATE_FILE_DIR", "CLAIM_NAMES", "replicate_verdicts", "replicates_section"]

REPLICATES_FILE = "replicates.json"
REPLICATE_FILE_DIR = "replicates"
#: The claims' short names in the replicates table.
CLAIM_NAMES = {"final_third": "final third of the layers", "shared_nodes": "Ethics share more nodes than Politics"}


def _estimate(result: dict, key: str) -> str:
    if key == "final_third":
        return f"{result['estimate']:.3g} [{result['ci_low']:.3g}, {result['ci_high']:.3g}]"
    main = next((r for r in result["methods"] if r["method"] == "calibrated"), result["methods"][0])
    p = main["p_permutation"]
    return f"{main['difference']:.3g}" + ("" if pd.isna(main["ci_low"]) else
                                            f" [{main['ci_low']:.3g}, {main['ci_high']:.3g}], p {p:.3g}")


def replicate_verdicts(out: Path, claim_results: Callable[[Path], dict]) -> pd.DataFrame | None:
    """One row per (seed, claim): ``seed, claim, verdict, estimate, store`` (None without ``replicates.json``).

    ``claim_results(study_dir)`` gives ``{claim key: result dict or None}`` (``personas.report.claim_results``).
    """
    info_file = out / REPLICATES_FILE
    if not info_file.exists():
        return None
    info = read_json(info_file)
    rows = []
    for seed in info["seeds"]:
        sub = out / info["dirs"][str(seed)]
        results = claim_results(sub) if sub.is_dir() else {}
        for key, name in CLAIM_NAMES.items():
            result = results.get(key)
            rows.append({"seed": int(seed), "claim": name,
                         "verdict": result["verdict"] if result else "missing",
                         "estimate [interval]": _estimate(result, key) if result else "",
                         "store": info.get("store_keys", {}).get(str(seed), "")})
    return pd.DataFrame(rows)


def replicates_section(out: Path, claim_results: Callable[[Path], dict]) -> str:
    """Markdown: the verdicts per seed and the share of seeds that agree, or why there is one seed only."""
    table = replicate_verdicts(out, claim_results)
    if table is None or table["seed"].nunique() < 2:
        return ("One statement-sampling seed only (`--replicates 1`): the verdicts above are not checked on "
                "other statement samples (trimmed from the protocol for time; `python -m personas.study "
                "--replicates 3` runs three seeds and reports how many agree).")
    n_seeds = table["seed"].nunique()
    lines = [f"The study was run on {n_seeds} statement-sampling seeds (every random choice downstream follows "
             "the seed too); a seed whose statements coincide with another's reuses its activations (same "
             "*store* key). Each seed's verdicts come from its own artifacts by the same rule:", "",
             markdown_table(table), ""]
    for claim, part in table.groupby("claim", sort=False):
        labels = [v for v in part["verdict"] if v != "missing"]
        if not labels:
            lines.append(f"- {claim}: no seed could test it.")
            continue
        agree = agreement(labels)
        lines.append(f"- {claim}: {agree['majority']} in {agree['counts'][agree['majority']]} of {agree['n']} "
                     f"seeds ({agree['share']:.0%} agree)"
                     + ("" if agree["share"] == 1 else "; the verdict depends on the statement sample") + ".")
    return "\n".join(lines)
