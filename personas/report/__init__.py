"""``report.md``: a study's results written up as the paper's, from the artifacts its notebooks wrote.

Reads, under a study's output directory: ``study.json`` (parameters, timings),
``tables/layer_metrics.csv`` and ``chosen_layer.json`` (representation_extraction),
``tables/deepscan_precision_recall.csv`` and ``runs/`` (run_deepscan),
``tables/nodes/*.csv`` and ``causal/`` (vis_top_nodes). A missing artifact is
reported as missing in its section rather than failing the whole report, so a
partial study still gets a readable report; every artifact is first cross-checked
(``personas.report.checks``: present and whole, the chosen layer against the scanned
one, null runs against their run files, seeds and settings against ``study.json``) and
each problem is listed under "What failed or is missing".
"""

from personas.report.comparison import build_comparison_report, write_comparison_report
from personas.report.study import REPORT_SECTIONS, build_report, claim_results, report_verdicts, write_report
from personas.report.tables import markdown_table

__all__ = ["REPORT_SECTIONS", "markdown_table", "claim_results", "build_report", "write_report", "build_comparison_report",
           "write_comparison_report", "report_verdicts"]
