"""Replicates and the store keyed by the statement sample; claim verdicts per seed in the report.

The store key is a hash of the statement ids a study draws, so the quick and the default study
(other statements) live side by side under one ``--output``, and a replicate whose statements
coincide with another's reuses its activations (tiny model from ``tests/tiny_models.py``).
The report's replicates section is checked on planted layer profiles and a planted claims table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from personas._core.io import write_json
from personas.layers import LayerProtocol, ProbeSettings, analyse_layers, save_results, synthetic_activations
from personas.model.extraction import ExtractionSettings, extract_to_store
from personas.report import build_report, claim_results
from personas.statements import load_statements
from personas.study import split_parameters, statement_sample_key, study_parameters
from tests.tiny_models import make_model, make_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_store_key_follows_the_statement_sample(tmp_path):
    quick = study_parameters(name="smoke", output=tmp_path, quick=True)
    full = study_parameters(name="default", output=tmp_path)
    assert Path(quick["store_dir"]).parent == Path(full["store_dir"]).parent == tmp_path / "activations"
    assert quick["store_dir"] != full["store_dir"] and Path(full["store_dir"]).name.startswith("sample-")
    assert study_parameters(name="other", output=tmp_path)["store_dir"] == full["store_dir"]  # same sample
    one = {"personas": ["agreeableness"], "n_per_direction": 40}
    assert statement_sample_key({**one, "seed": 0}) != statement_sample_key({**one, "seed": 1})
    # every statement, whatever the seed: the samples coincide, so the replicates share one store
    every = {"personas": ["agreeableness"], "n_per_direction": None}
    assert statement_sample_key({**every, "seed": 0}) == statement_sample_key({**every, "seed": 1})
    assert quick["replicates"] == 2 and full["replicates"] == 1
    assert all("replicates" not in p for p in split_parameters(quick).values())  # no notebook parameter
    with pytest.raises(ValueError, match="replicates must be an integer >= 1"):
        study_parameters(output=tmp_path, replicates=0)


def test_quick_and_default_samples_live_side_by_side(tmp_path):
    model, tokenizer = make_model("llama", seed=0), make_tokenizer("llama3")
    settings = ExtractionSettings(position="last", batch_size=64)
    personas = ["agreeableness"]
    stores = {}
    for name, quick in (("smoke", True), ("default", False)):
        params = study_parameters(name=name, output=tmp_path, quick=quick, personas=personas)
        statements = load_statements(personas, n_per_direction=params.get("n_per_direction", 300), seed=0)
        stores[name] = (params["store_dir"], statements)
        got = extract_to_store(model, tokenizer, statements, model_name="tiny", layers=[0, 1], store_dir=params["store_dir"],
                               settings=settings, progress=False)
        assert list(got["status"]) == ["computed"]
    for store, statements in stores.values():  # both kept: a rerun of either reuses its own
        got = extract_to_store(model, tokenizer, statements, model_name="tiny", layers=[0, 1], store_dir=store,
                               settings=settings, progress=False)
        assert list(got["status"]) == ["reused"]
    # what the keyed store avoids: one folder for both samples is an error naming the statements
    with pytest.raises(ValueError, match="ids: .* differ"):
        extract_to_store(model, tokenizer, stores["default"][1], model_name="tiny", layers=[0, 1],
                         store_dir=stores["smoke"][0], settings=settings, progress=False)


def _layer_table(out: Path, peak: int, seed: int) -> None:
    acts, meta = synthetic_activations(n_personas=6, n_per_direction=30, hidden_size=12, layers=range(7),
                                       direction_signal={peak: 2.0}, seed=seed)
    table = analyse_layers(acts, meta, model_name="m", n_blocks=6, protocol=LayerProtocol(n_reps=2, n_per_cluster=10),
                           probes=ProbeSettings(classifiers=(), direction_classifiers=()), n_jobs=1, progress=False)
    save_results(table, out / "tables" / "layer_metrics.csv")


def _claims_csv(out: Path, calibrated_p: float) -> None:
    # the issue's numbers: the calibrated sets' p on either side of 0.05, the union interval excluding 0
    rows = [
        {"topic_a": "Ethics", "topic_b": "Politics", "method": "calibrated", "difference": -0.004,
         "ci_low": -0.02, "ci_high": 0.01, "p_bootstrap": 0.3, "p_permutation": calibrated_p},
        {"topic_a": "Ethics", "topic_b": "Politics", "method": "union", "difference": -0.025,
         "ci_low": -0.038, "ci_high": -0.013, "p_bootstrap": 0.01, "p_permutation": 0.016},
    ]
    path = out / "tables" / "nodes" / "claims.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def test_report_gives_verdicts_per_seed_and_their_agreement(tmp_path):
    main = tmp_path / "study"
    seeds = {0: main, 1: main / "replicates" / "seed-1", 2: main / "replicates" / "seed-2"}
    for seed, out in seeds.items():
        _layer_table(out, peak=5 if seed < 2 else 2, seed=seed + 1)  # seed 2: an early peak
        _claims_csv(out, calibrated_p=0.048 if seed == 0 else 0.0556)
    write_json(main / "study.json", {"parameters": {"model_name": "m", "replicates": 3}})
    write_json(main / "replicates.json", {"seeds": [0, 1, 2], "dirs": {"0": ".", "1": "replicates/seed-1",
                                                                      "2": "replicates/seed-2"},
                                          "store_keys": {"0": "sample-a", "1": "sample-b", "2": "sample-b"}})
    results = {s: claim_results(out) for s, out in seeds.items()}
    assert [results[s]["final_third"]["verdict"] for s in seeds] == ["supported", "supported", "contradicted"]
    # the calibrated interval crosses 0: inconclusive whichever side of 0.05 its p falls; the union: contradicted
    nodes = results[0]["shared_nodes"]
    assert nodes["verdict"] == "inconclusive"
    assert {m["method"]: m["verdict"] for m in nodes["methods"]} == {"calibrated": "inconclusive",
                                                                     "union": "contradicted"}
    text = build_report(main)
    section = text[text.index("## Replicates"):text.index("## Timing")]
    assert "- final third of the layers: supported in 2 of 3 seeds (67% agree)" in section
    assert "- Ethics share more nodes than Politics: inconclusive in 3 of 3 seeds (100% agree)." in section
    assert section.count("| sample-b |") == 4  # seeds 1 and 2 share a statement sample: one store
    claims = text[text.index("## The paper's claims"):text.index("## Replicates")]
    assert "The methods disagree (the calibrated sets say inconclusive; the union sets say contradicted)" in claims
    assert "no significant difference" not in text
    assert "3 statement-sampling seed" not in text[:text.index("## Layer separation")]  # 3 seeds: nothing trimmed


def test_one_seed_is_listed_as_trimmed(tmp_path):
    _layer_table(tmp_path, peak=5, seed=1)
    write_json(tmp_path / "study.json", {"parameters": {"model_name": "m", "replicates": 1, "untrained_control": False}})
    text = build_report(tmp_path)
    config = text[:text.index("## Layer separation")]
    assert "computed on 1 statement-sampling seed(s), not 3 (`--replicates`)" in config
    assert "no untrained-model control of the layer claim" in config
    assert "One statement-sampling seed only" in text[text.index("## Replicates"):]
    assert "No untrained-model control ran" in text


def test_random_pick_precision_comes_from_the_sample_sizes():
    from personas.report.scans import baselines_table

    summary = pd.DataFrame({"level": [2, 2], "method": ["deepscan", "lof"], "precision_mean": [0.9, 0.6],
                            "recall_mean": [0.8, 0.5]})
    sizes = pd.DataFrame(columns=["level", "persona", "records_mean", "nodes_mean"])
    assert "precision 0.75 (15 of the 20 records" in baselines_table(summary, sizes, (5, 15))
    assert "random pick" not in baselines_table(summary, sizes)  # sizes unknown: no claim about chance


def test_a_replicate_with_the_same_statements_reuses_the_store(tmp_path):
    model, tokenizer = make_model("llama", seed=0), make_tokenizer("llama3")
    settings = ExtractionSettings(position="last", batch_size=128)
    status = []
    for seed in (0, 1):  # every statement of the persona: both seeds draw the same sample
        params = study_parameters(name="r", output=tmp_path, personas=["agreeableness"], n_per_direction=None,
                                  seed=seed)
        statements = load_statements(["agreeableness"], n_per_direction=None, seed=seed)
        got = extract_to_store(model, tokenizer, statements, model_name="tiny", layers=[1], store_dir=params["store_dir"],
                               settings=settings, progress=False)
        status.append((params["store_dir"], got["status"].iloc[0]))
    assert status[0][0] == status[1][0] and [s for _, s in status] == ["computed", "reused"]
