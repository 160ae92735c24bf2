"""The quick study with a researcher's own personas and topics, from the command line, with a quiet console.

Two personas written here (statements drawn from two bundled behaviours and renamed) join the
quick study's three; the topics file puts both in one topic beside two of the bundled personas
and leaves ``politically-liberal`` in none. One run of ``python -m personas.study --quick
--statements ... --topics ...`` (a few minutes on the embedded SmolLM2); the tests read its
console, its notebooks and its report.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import MINE

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parent.parent
WARNING_LINE = re.compile(r"warn", re.IGNORECASE)


@pytest.fixture(scope="module")
def study(quick_study):
    """The shared quick study of tests/conftest.py."""
    return quick_study.out, quick_study.console, quick_study.statements, quick_study.topics, quick_study.params


def test_the_console_is_one_line_per_step_and_a_summary(study):
    out, console, _, _, _ = study
    warnings = [line for line in console.splitlines() if WARNING_LINE.search(line)]
    assert len(warnings) <= 5, warnings
    steps = [line for line in console.splitlines() if re.match(r"\[\d/4\] \S+ +\d+\.\d s$", line)]
    assert len(steps) == 4, console
    assert f"report: {out / 'report.md'}" in console
    assert re.search(r"study finished in \d+\.\d s", console)
    assert "personas diverge most in the final third" in console  # a verdict line


def test_the_report_names_both_personas_at_every_level_their_topics_allow(study):
    out, _, statements, topics, params = study
    summary = pd.read_csv(out / "tables" / "deepscan_precision_recall.csv")
    ds = summary[summary["method"] == "deepscan"]
    levels = {level: set(part["persona"]) for level, part in ds.groupby("level")}
    assert set(MINE.values()) <= levels[2] and set(MINE.values()) <= levels[1]
    assert levels[1] == set(MINE.values())  # the bundled ones are alone in their topic or in none
    assert levels[0] == {"Leisure+", "Personality+", "Ethics+"}
    assert "politically-liberal" in levels[2]
    text = (out / "report.md").read_text(encoding="utf-8")
    table = text[text.index("## DeepScan precision and recall"):text.index("## DeepScan against the baselines")]
    for level in ("2 (within persona)", "1 (within topic)"):
        for persona in MINE.values():
            assert re.search(rf"\| {re.escape(level)} \| {persona} \|", table), (level, persona)
    assert "| 0 (between topics) | Leisure+ |" in table
    config = text[text.index("## Configuration"):text.index("## Layer separation per persona")]
    for path in (statements, topics):
        assert f"{path} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()})" in config
    assert "Personas in no topic" in config and "`politically-liberal`" in config
    for persona in MINE.values():
        assert persona in text[text.index("## Layer separation per persona"):text.index("## Layer profile")]


def test_the_files_hashes_are_in_the_store_and_the_run_files(study):
    out, _, statements, topics, params = study
    digest = hashlib.sha256(statements.read_bytes()).hexdigest()
    manifest = json.loads((Path(params["store_dir"]) / "smollm2-135m-instruct" / "likes-galleries.json").read_text())
    assert manifest["sources"]["statements_file"]["sha256"] == digest
    index = json.loads((out / "runs" / "index.json").read_text())
    header = json.loads((out / "runs" / index["levels"]["1"]["likes-concerts"]).read_text().splitlines()[0])
    assert header["provenance"]["statements_file"]["sha256"] == digest
    assert header["provenance"]["topics_file"]["sha256"] == hashlib.sha256(topics.read_bytes()).hexdigest()


def test_the_node_analysis_gives_a_persona_in_no_topic_its_own_group(study):
    out, _, _, _, _ = study
    table = pd.read_csv(out / "tables" / "nodes" / "overlap_table.csv")
    groups = dict(zip(table["group"], table["n_personas"]))
    assert groups["Leisure"] == 2 and groups["politically-liberal"] == 1 and groups["ALL"] == 5


def test_executed_notebooks_carry_no_warning_tracebacks_or_source_echoes(study):
    out, _, _, _, _ = study
    echo = re.compile(r"\.py:\d+: \w*Warning|^\s+warnings\.warn\(|Traceback", re.MULTILINE)
    notes = []
    for path in sorted((out / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                text = output.get("text", "") if output.get("output_type") == "stream" else ""
                assert output.get("output_type") != "error", path.name
                assert not echo.search(text), (path.name, text[:500])
                notes += [line for line in text.splitlines() if line.startswith(("StudyNote", "ConstantFeatures"))]
    # one line per fact: layer 0 is constant, levels 1 and 0 skip personas (once per level)
    # (once for the model, once for its untrained control, which goes through the same analysis)
    assert sum(line.startswith("ConstantFeaturesWarning: layer 0:") for line in notes) == 2, notes
    assert any("in no topic" in line and "politically-liberal" in line for line in notes), notes
