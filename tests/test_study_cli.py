"""The study command line: every notebook parameter by -p, each notebook only its own, models compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from personas.layers import LayerProtocol, ProbeSettings, analyse_layers, save_results, synthetic_activations
from personas.report import build_comparison_report
from personas._core.parameters import parse_value as _parse_value
from personas.study import notebook_parameters, split_parameters, study_parameters
from personas.study.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_each_notebook_gets_only_the_parameters_its_cell_defines(tmp_path):
    known = notebook_parameters()
    params = study_parameters(output=tmp_path, n_runs=7, control_folds=3, salient_method="union", scheduler=None)
    split = split_parameters(params)
    assert split["run_deepscan.ipynb"]["n_runs"] == 7 and "n_runs" not in split["representation_extraction.ipynb"]
    assert split["representation_extraction.ipynb"]["control_folds"] == 3
    assert split["vis_top_nodes.ipynb"]["salient_method"] == "union"
    for nb, part in split.items():
        assert set(part) <= set(known[nb]), nb
    # shared names go to every notebook that defines them
    assert all(part["out_dir"] == str(tmp_path / "default") for part in split.values())


def test_unknown_parameter_is_an_error_listing_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown notebook parameter\(s\) \['n_runz'\].*n_runs"):
        study_parameters(output=tmp_path, n_runz=3)
    with pytest.raises(SystemExit):
        main(["-p", "n_runz", "3", "--output", str(tmp_path)])
    with pytest.raises(SystemExit):  # the study's own keys have their own options
        main(["-p", "model_name", "x", "--output", str(tmp_path)])


def test_parameter_values_are_literals_or_text():
    assert _parse_value("20") == 20 and _parse_value("0.5") == 0.5 and _parse_value("None") is None
    assert _parse_value("[2, 1]") == [2, 1] and _parse_value("upper") == "upper"
    assert _parse_value("'2'") == "2"


def test_help_lists_every_notebook_parameter_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for nb, params in notebook_parameters().items():
        assert nb in text
        for name, default in params.items():
            if name not in ("store_dir", "out_dir"):
                assert f"{name} = {default!r}" in text, name


def _layer_table(model, n_blocks, peak, seed=1):
    acts, meta = synthetic_activations(n_personas=4, n_per_direction=30, hidden_size=12,
                                       layers=range(n_blocks + 1), direction_signal={peak: 2.0}, seed=seed)
    return analyse_layers(acts, meta, model_name=model, n_blocks=n_blocks,
                          protocol=LayerProtocol(n_reps=2, n_per_cluster=10),
                          probes=ProbeSettings(classifiers=(), direction_classifiers=()), n_jobs=1, progress=False)


def test_comparison_report_puts_models_on_relative_depth(tmp_path):
    """Two planted models and their untrained controls: one figure, each verdict beside its control, one joint
    verdict by the rule of docs/verdicts.md, and a line on each model's causal check."""
    import matplotlib.image

    from personas.report.layers import final_third_claim
    from personas.report.verdicts import across_models

    studies, verdicts = {}, {}
    for model, n_blocks, peak in (("deep", 8, 6), ("shallow", 4, 3)):
        table = _layer_table(model, n_blocks, peak)
        control = _layer_table(f"{model} (untrained, seed 0)", n_blocks, 1, seed=2)  # the control peaks early
        sub = tmp_path / model
        save_results(table, sub / "tables" / "layer_metrics.csv")
        save_results(control, sub / "tables" / "layer_metrics_untrained.csv")
        studies[model] = sub
        verdicts[model] = final_third_claim(table, untrained=control)["verdict"]
    text = build_comparison_report(tmp_path, studies)
    assert "2 models compared" in text and "deep/report.md" in text and "shallow/report.md" in text
    # the planted peaks, on one relative-depth axis: 6/8 and 3/4, both in the final third
    rows = [line for line in text.splitlines() if line.startswith("| deep") or line.startswith("| shallow")]
    assert any("| deep | 6 | 0.750 |" in r for r in rows) and any("| shallow | 3 | 0.750 |" in r for r in rows)
    assert all(r.rstrip().endswith(("| supported |", "| inconclusive |", "| contradicted |")) for r in rows)
    joint = across_models(verdicts)
    assert f"**Across models: {joint.label}** ({joint.reason}" in text
    assert "## Causal check per model" in text and "- `deep`: no causal check" in text
    figure = tmp_path / "figures" / "models_by_relative_depth.png"
    assert matplotlib.image.imread(figure).shape[1] > 1000  # two panels side by side
    assert (tmp_path / "figures" / "metric_by_relative_depth_cluster_silhouette.png").stat().st_size > 0
    assert not (tmp_path / "figures" / "metric_by_relative_depth_persona_classifier_accuracy.png").exists()


def test_models_by_relative_depth_draws_each_model_and_its_control():
    from personas.layers import combine_results
    from personas.viz import plot_models_by_relative_depth

    deep, shallow = _layer_table("deep", 8, 6), _layer_table("shallow", 4, 3)
    controls = {"deep": _layer_table("deep (untrained)", 8, 1, seed=2)}
    fig = plot_models_by_relative_depth(combine_results([deep, shallow]), controls)
    left, right = fig.axes[:2]
    labels = [line.get_label() for line in left.get_lines()]
    assert labels == ["deep", "deep, untrained", "shallow"]
    assert [line.get_linestyle() for line in left.get_lines()] == ["-", "--", "-"]
    assert right.get_yscale() == "log" and "centroid distance" in right.get_ylabel()
    x, y = left.get_lines()[0].get_data()
    hand = deep[(deep["metric"] == "silhouette") & (deep["control"] == "none") & (deep["analysis"] == "cluster")]
    expected = hand.groupby("relative_depth")["mean"].mean()
    np.testing.assert_allclose(x, expected.index) and np.testing.assert_allclose(y, expected.to_numpy())
    with pytest.raises(ValueError, match="cluster metrics"):
        plot_models_by_relative_depth(deep, metrics=("accuracy",))


def test_papermill_reads_every_parameter_line(caplog):
    """papermill inspects each parameters cell; a line it cannot parse (a '>=' in a comment did) is dropped."""
    import logging

    import nbformat
    from papermill.translators import PythonTranslator

    for nb, params in notebook_parameters().items():
        cell = next(c for c in nbformat.read(ROOT / nb, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            seen = {p.name for p in PythonTranslator.inspect(cell)}
        assert set(params) <= seen, (nb, sorted(set(params) - seen))
        assert "Unable to parse" not in caplog.text
