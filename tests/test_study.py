"""The three notebooks and the study command, end to end on small parameters.

One quick study (3 bundled personas and 2 from a user's file, 30 statements per direction,
two replicates, the embedded default model; the session fixture ``quick_study`` of
tests/conftest.py) executes every notebook top to bottom through papermill; the tests
then check the artifacts each notebook promises and the report.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import MINE

from personas.report import REPORT_SECTIONS, markdown_table
from personas.study import NOTEBOOKS, notebook_defaults, study_parameters

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
WARNING_LINE = re.compile(r"warn", re.IGNORECASE)



@pytest.fixture(scope="module")
def study(quick_study):
    """The shared quick study (tests/conftest.py): 3 bundled personas and 2 of a user's, 2 replicates."""
    return quick_study.out, quick_study.out / "report.md", quick_study.params


@pytest.fixture(scope="module")
def personas(quick_study):
    return quick_study.personas


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def test_every_notebook_ran_without_error(study):
    out, _, _ = study
    for name in NOTEBOOKS:
        nb = nbformat.read(out / "notebooks" / name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, name
        errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{name}: {errors[:1]}"
        # papermill injected our parameters right after the tagged parameters cell
        tags = [c.metadata.get("tags", []) for c in code]
        assert "parameters" in tags[0] and "injected-parameters" in tags[1], name


def test_extraction_notebook_artifacts(study, personas):
    out, _, params = study
    table = pd.read_csv(out / "tables" / "layer_metrics.csv")
    # SmolLM2: 30 blocks, the default layers (the paper's pattern) analysed, controls present
    assert sorted(table["layer"].unique()) == [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 29]
    assert set(table["control"]) == {"none", "shuffled_labels", "wording", "length"}
    assert set(table.loc[table["persona"] != "ALL", "persona"]) == set(personas)
    chosen = json.loads((out / "chosen_layer.json").read_text())
    assert 1 <= chosen["layer"] <= 29 and chosen["metric"] == "silhouette"
    assert chosen["relative_depth"] == pytest.approx(chosen["layer"] / 30)
    figures = list((out / "figures").glob("*.png"))
    assert len(figures) >= 5 and all(_nonempty(f) for f in figures)
    store = Path(params["store_dir"]) / "smollm2-135m-instruct"
    assert sorted(p.stem for p in store.glob("*.safetensors")) == sorted(personas)
    manifest = json.loads((store / "agreeableness.json").read_text())
    assert manifest["template_mode"] == "system" and manifest["position"] == "last"
    assert manifest["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and manifest["quantisation"] == "MOSTLY_Q4_1"


def test_deepscan_notebook_artifacts(study, personas):
    out, _, params = study
    summary = pd.read_csv(out / "tables" / "deepscan_precision_recall.csv")
    assert set(summary["level"]) == {0, 1, 2}
    assert set(summary["method"]) == {"deepscan", "lof", "iforest", "kmeans"}
    assert (summary["n_runs"] == params["n_runs"]).all()
    index = json.loads((out / "runs" / "index.json").read_text())
    assert set(index["levels"]) == {"2", "1", "0"} and set(index["levels"]["2"]) == set(personas)
    for level in index["levels"].values():
        for name in level.values():
            lines = (out / "runs" / name).read_text().splitlines()
            assert len(lines) == 1 + params["n_runs"]  # header + one line per run
    assert _nonempty(out / "figures" / "precision_recall_level2.png")


def test_nodes_notebook_artifacts(study, personas):
    out, _, _ = study
    nodes = out / "tables" / "nodes"
    sizes = pd.read_csv(nodes / "set_sizes.csv")
    assert sorted(sizes["persona"]) == sorted(personas)
    salient = json.loads((nodes / "salient_sets.json").read_text())
    assert {p: len(v) for p, v in salient.items()} == dict(zip(sizes["persona"], sizes["size"]))
    for name in ("pairwise_overlaps.csv", "overlap_table.csv", "flagged_statements.csv", "node_frequency.csv"):
        assert _nonempty(nodes / name), name
    for name in ("overlap_jaccard.png", "overlap_significance.png", "node_frequency.png"):
        assert _nonempty(out / "figures" / name), name


def test_causal_check_artifacts(study):
    out, _, params = study
    gate = pd.read_csv(out / "causal" / "causal_gate.csv")
    checked = gate[gate["persona"].isin(params["causal_personas"])]
    assert set(checked["readout"]) == set(notebook_defaults()["causal_readouts"])
    assert (gate["n_heldout"] == 2 * params["causal_heldout"]).all()
    dose = pd.read_csv(out / "causal" / "causal_dose_response.csv")
    assert set(dose["alpha"]) == set(params["causal_dose_alphas"]) and dose["layer"].nunique() == 3
    spec = pd.read_csv(out / "causal" / "causal_specificity.csv")
    assert spec["steer_persona"].nunique() == params["causal_specificity"]
    # the report's causal section is built from these files (no summary.md copy), and its cross-check finds them
    assert not (out / "causal" / "summary.md").exists()
    report = (out / "report.md").read_text()
    assert "**Gate.**" in report
    failed = report.split("## What failed or is missing", 1)[1].split("\n## ", 1)[0]
    assert "causal/" not in failed, failed
    for name in ("causal_dose_response.png", "causal_specificity.png"):
        assert _nonempty(out / "figures" / name), name


def test_report_has_every_section(study, personas):
    out, report, _ = study
    assert report == out / "report.md"
    text = report.read_text()
    positions = [text.find(head) for head in REPORT_SECTIONS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)
    assert "Not available" not in text
    for persona in personas:
        assert persona in text


def test_untrained_control_artifacts(study, personas):
    out, report, _ = study
    trained = pd.read_csv(out / "tables" / "layer_metrics.csv")
    untrained = pd.read_csv(out / "tables" / "layer_metrics_untrained.csv")
    assert set(untrained["model"]) == {"smollm2-135m-instruct (untrained, seed 0)"}
    assert sorted(untrained["layer"].unique()) == sorted(trained["layer"].unique())
    assert set(untrained["analysis"]) == {"cluster"} and set(untrained["persona"]) == set(personas)
    assert _nonempty(out / "figures" / "untrained_control_silhouette.png")
    text = report.read_text()
    assert "SH untrained model" in text and "Untrained control (the same architecture with random weights" in text


def test_replicates_run_and_report_per_seed(study):
    out, report, params = study
    assert params["replicates"] == 2
    info = json.loads((out / "replicates.json").read_text())
    assert info["seeds"] == [0, 1] and info["dirs"]["1"] == "replicates/seed-1"
    rep = out / "replicates" / "seed-1"
    assert _nonempty(rep / "report.md") and _nonempty(rep / "tables" / "layer_metrics_untrained.csv")
    assert not (rep / "causal").exists()  # the replicates leave the causal check out
    section = report.read_text().split("## Replicates", 1)[1].split("## Timing", 1)[0]
    assert "run on 2 statement-sampling seeds" in section and section.count("| final third of the layers |") == 2
    assert "seeds (" in section and "agree)" in section


def test_the_first_notebook_again_reads_the_store_and_gives_the_same_layer_rows(study):
    """representation_extraction.ipynb's calls again, in this process, with the study's parameters: nothing is
    extracted again (the store's modification times kept), and the same seed gives the same layer-table rows
    (three of its layers: each layer's rows depend on that layer alone)."""
    import utils_layers as ul

    out, _, params = study
    p = {**notebook_defaults(), **params}
    store = Path(p["store_dir"]) / p["model_name"]
    before = {f.name: f.stat().st_mtime_ns for f in store.iterdir()}
    inputs = ul.study_inputs(p["personas"], statements_file=p["statements_file"], topics_file=p["topics_file"],
                             prefer=p["prefer"], n_per_direction=p["n_per_direction"],
                             min_confidence=p["min_confidence"])
    statements = ul.load_statements(inputs.personas, n_per_direction=p["n_per_direction"],
                                    min_confidence=p["min_confidence"], seed=p["seed"], source=inputs.table)
    model, tokenizer = ul.load_model(p["model_name"], dtype=p["dtype"], device=p["device"])
    plan = ul.extraction_plan(model, p["layers"], p["position"])
    settings = ul.ExtractionSettings(position=plan.position, template=p["template"], batch_size=p["batch_size"])
    ul.extract_with_controls(model, tokenizer, statements, model_name=p["model_name"], layers=plan.layers,
                             store_dir=p["store_dir"], settings=settings, wording_control=p["wording_control"],
                             sources=inputs.files, progress=False)
    assert {f.name: f.stat().st_mtime_ns for f in store.iterdir()} == before  # nothing re-extracted
    layers = [0, plan.layers[len(plan.layers) // 2], plan.layers[-1]]
    activations, meta = ul.load_layers(p["store_dir"], p["model_name"], inputs.personas, layers)
    wording, lengths = ul.load_wording_controls(p["store_dir"], p["model_name"], inputs.personas, meta)
    table = ul.analyse_layers(
        activations, meta, model_name=p["model_name"], n_blocks=plan.n_blocks,
        protocol=ul.LayerProtocol(n_components=p["n_components"], n_reps=p["n_reps"], n_per_cluster=p["n_per_cluster"]),
        probes=ul.ProbeSettings(n_folds=p["n_folds"], n_trees=p["n_trees"], control_folds=p["control_folds"]),
        controls=ul.LayerControls(wording=wording, lengths=lengths), seed=p["seed"], progress=False)
    saved = pd.read_csv(out / "tables" / "layer_metrics.csv")
    again = pd.read_csv(io.StringIO(table.to_csv(index=False)))  # as the notebook's CSV reads back
    pd.testing.assert_frame_equal(again, saved[saved["layer"].isin(layers)].reset_index(drop=True))


def test_an_unchanged_rerun_reuses_every_stage(quick_study, tmp_path):
    """The same command again, on a copy of the study (its folder and store moved together): every notebook
    and the replicate say "reused", and no artifact is rewritten (modification times kept)."""
    import os
    import re
    import shutil
    import subprocess
    import sys

    root = tmp_path / "moved"
    shutil.copytree(quick_study.out.parent, root, copy_function=shutil.copy2)
    skip = {"report.md", "study.json", "replicates.json", ".study.lock"}
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.name not in skip}
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    done = subprocess.run(
        [sys.executable, "-m", "personas.study", "--quick", "--statements", str(quick_study.statements), "--topics",
         str(quick_study.topics), "--output", str(root), "--name", "smoke", "--no-progress"],
        cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=900,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-3000:]
    assert len(re.findall(r"\[\d/4\] \S+\.ipynb +reused \(inputs, settings and code unchanged\)", console)) == 3, console
    after = {p: p.stat().st_mtime_ns for p in before if p.exists()}
    assert after == before, sorted(str(p) for p in before if after.get(p) != before[p])[:5]
    replicate = json.loads((root / "smoke" / "replicates" / "seed-1" / "study.json").read_text())
    assert replicate["reused"] == list(NOTEBOOKS)
    assert json.loads((root / "smoke" / "study.json").read_text())["reused"] == list(NOTEBOOKS)


def test_markdown_table():
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, float("nan")], "c": ["x|y", "z"]})
    assert markdown_table(df).splitlines() == [
        "| a | b | c |",
        "|---|---|---|",
        "| 1 | 0.500 | x\\|y |",
        "| 2 |  | z |",
    ]


def test_study_parameters_quick_and_overrides(tmp_path):
    p = study_parameters(name="x", output=tmp_path, quick=True, n_runs=3)
    assert p["out_dir"] == str(tmp_path / "x")
    assert Path(p["store_dir"]).parent == tmp_path / "activations"  # keyed by the statement sample
    assert p["n_runs"] == 3 and p["n_per_direction"] == 30 and len(p["personas"]) == 3
    full = study_parameters(name="y", output=tmp_path)
    assert full["personas"] is None and "n_runs" not in full  # the notebooks' own defaults

# ----------------------------------------------------------------------------- a researcher's own personas
# Two personas written in tests/conftest.py (statements drawn from two bundled behaviours and renamed) join
# the quick study's three; the topics file puts both in one topic beside two of the bundled personas and
# leaves ``politically-liberal`` in none. The tests read the command's console, its notebooks and its report.

@pytest.fixture(scope="module")
def user_study(quick_study):
    """The same study as the researcher sees it: its console and the user's statements and topics files."""
    return quick_study.out, quick_study.console, quick_study.statements, quick_study.topics, quick_study.params


def test_the_console_is_one_line_per_step_and_a_summary(user_study):
    out, console, _, _, _ = user_study
    warnings = [line for line in console.splitlines() if WARNING_LINE.search(line)]
    assert len(warnings) <= 5, warnings
    steps = [line for line in console.splitlines() if re.match(r"\[\d/4\] \S+ +\d+\.\d s$", line)]
    assert len(steps) == 4, console
    assert f"report: {out / 'report.md'}" in console
    assert re.search(r"study finished in \d+\.\d s", console)
    assert "personas diverge most in the final third" in console  # a verdict line


def test_the_report_names_both_personas_at_every_level_their_topics_allow(user_study):
    out, _, statements, topics, params = user_study
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


def test_the_files_hashes_are_in_the_store_and_the_run_files(user_study):
    out, _, statements, topics, params = user_study
    digest = hashlib.sha256(statements.read_bytes()).hexdigest()
    manifest = json.loads((Path(params["store_dir"]) / "smollm2-135m-instruct" / "likes-galleries.json").read_text())
    assert manifest["sources"]["statements_file"]["sha256"] == digest
    index = json.loads((out / "runs" / "index.json").read_text())
    header = json.loads((out / "runs" / index["levels"]["1"]["likes-concerts"]).read_text().splitlines()[0])
    assert header["provenance"]["statements_file"]["sha256"] == digest
    assert header["provenance"]["topics_file"]["sha256"] == hashlib.sha256(topics.read_bytes()).hexdigest()


def test_the_node_analysis_gives_a_persona_in_no_topic_its_own_group(user_study):
    out, _, _, _, _ = user_study
    table = pd.read_csv(out / "tables" / "nodes" / "overlap_table.csv")
    groups = dict(zip(table["group"], table["n_personas"]))
    assert groups["Leisure"] == 2 and groups["politically-liberal"] == 1 and groups["ALL"] == 5


def test_executed_notebooks_carry_no_warning_tracebacks_or_source_echoes(user_study):
    out, _, _, _, _ = user_study
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
