"""The heavy loops on a Dask cluster (a LocalCluster of two worker processes) equal a serial run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from personas._core.parallel import dask_scheduler, parallel_jobs
from personas.layers import LayerProtocol, ProbeSettings, cluster_separation, persona_classification, synthetic_activations
from personas.scans.driver import run_persona_scans
from personas.scans.settings import PoolSizes, SampleSizes, ScanPlan, ScanSettings

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _runs(path):
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header.pop("created", None)
    header.pop("versions", None)
    return header, [json.loads(x) for x in lines[1:]]


def test_deepscan_runs_on_dask_equal_serial_runs(scheduler, tmp_path):
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({
        "id": [f"s{i}" for i in range(120)],
        "persona": ["a"] * 60 + ["b"] * 60,
        "direction": (["positive"] * 30 + ["negative"] * 30) * 2,
    })
    X = rng.normal(size=(120, 40)).astype(np.float32)
    X[(meta["direction"] == "positive").to_numpy(), :5] += 2.0  # planted: + statements high on 5 nodes
    settings = ScanSettings(pool_sizes=PoolSizes(background=20, clean=10, anomalous=30),
                            sample_sizes=SampleSizes(clean=5, anomalous=5, n_runs=8), detection=True)
    kw = dict(model_name="toy", settings=settings, seed=1, progress=False)
    plan = ScanPlan(["a", "b"], layer=3, levels=(2,))
    serial = run_persona_scans(X, meta, plan, runs_dir=tmp_path / "serial", n_jobs=1, **kw)
    with dask_scheduler(scheduler) as client:
        assert client is not None and len(client.scheduler_info()["workers"]) == 2
        remote = run_persona_scans(X, meta, plan, runs_dir=tmp_path / "dask",
                                   n_jobs=parallel_jobs(1, scheduler), **kw)
    cols = [c for c in serial.columns if c != "run_file"]
    pd.testing.assert_frame_equal(serial[cols], remote[cols])
    for persona in ("a", "b"):
        name = f"level2_layer3_{persona}.jsonl"
        assert _runs(tmp_path / "serial" / name) == _runs(tmp_path / "dask" / name)
    # the planted nodes are the ones found most often
    header, runs = _runs(tmp_path / "dask" / "level2_layer3_a.jsonl")
    counts = np.bincount(np.concatenate([r["nodes"] for r in runs]), minlength=40)
    assert len(runs) == 8 and set(np.argsort(-counts, kind="stable")[:5]) == set(range(5))


def test_layer_analysis_on_dask_equals_serial(scheduler):
    acts, meta = synthetic_activations(n_personas=3, n_per_direction=20, hidden_size=16, layers=range(3),
                                       direction_signal={2: 1.0}, seed=0)
    kw = dict(model_name="toy", n_blocks=4, layers=[0, 2], protocol=LayerProtocol(n_reps=2, n_per_cluster=10),
              progress=False)
    probes = dict(probes=ProbeSettings(n_folds=3, n_trees=5), model_name="toy", n_blocks=4, layers=[0, 2],
                  progress=False)
    serial = cluster_separation(acts, meta, n_jobs=1, **kw)
    serial_personas = persona_classification(acts, meta, n_jobs=1, **probes)
    with dask_scheduler(scheduler):
        remote = cluster_separation(acts, meta, n_jobs=-1, **kw)
        remote_personas = persona_classification(acts, meta, n_jobs=-1, **probes)  # a layer per worker
    pd.testing.assert_frame_equal(serial, remote)
    pd.testing.assert_frame_equal(serial_personas, remote_personas)


def test_no_scheduler_is_a_no_op_and_bad_addresses_are_clear():
    with dask_scheduler(None) as client:
        assert client is None
    assert parallel_jobs(3, None) == 3 and parallel_jobs(3, "tcp://x:1") == -1
    with pytest.raises(ValueError, match="scheduler must be an address"):
        with dask_scheduler(""):
            pass
    with pytest.raises(ConnectionError, match="no Dask scheduler answered"):
        with dask_scheduler("tcp://127.0.0.1:9", timeout=1):
            pass
