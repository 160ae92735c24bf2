"""Pool and sample sizes as settings objects: the paper's defaults, checked fields, passed down to the pools and runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personas.scans.driver import run_persona_scans
from personas.scans.pools import scan_pools
from personas.scans.settings import PoolSizes, SampleSizes, ScanPlan, ScanSettings


def _meta(n: int = 20) -> pd.DataFrame:
    rows = [{"id": f"{p}/{d}/{i}", "persona": p, "direction": d, "statement": f"{p} {d} {i}"}
            for p in ("a", "b") for d in ("positive", "negative") for i in range(n)]
    return pd.DataFrame(rows)


def test_paper_defaults_and_checks():
    assert (PoolSizes().background, PoolSizes().clean, PoolSizes().anomalous) == (250, 50, 300)
    assert (SampleSizes().clean, SampleSizes().anomalous, SampleSizes().n_runs) == (50, 50, 100)
    with pytest.raises(ValueError, match="pool_sizes.clean must be >= 1"):
        PoolSizes(clean=0)
    with pytest.raises(TypeError, match="sample_sizes.n_runs must be an int"):
        SampleSizes(n_runs=2.0)


def test_objects_reach_the_pools_and_the_runs(tmp_path):
    meta = _meta()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((len(meta), 5))
    X[(meta.persona == "a") & (meta.direction == "positive")] += 3.0
    common = dict(model_name="toy", seed=0, progress=False)
    plan = ScanPlan(["a"], layer=1, levels=[2])
    settings = ScanSettings(pool_sizes=PoolSizes(12, 8, 20), sample_sizes=SampleSizes(4, 4, 3), detection=False)
    by_objects = run_persona_scans(X, meta, plan, runs_dir=tmp_path / "obj", settings=settings, **common)
    assert by_objects.loc[0, "n_runs"] == 3
    # the pools are the ones scan_pools draws with those sizes, and each run draws 4 + 4 records
    pools = scan_pools(meta, "a", level=2, sizes=PoolSizes(12, 8, 20), seed=0)
    assert (len(pools.background), len(pools.clean), len(pools.anomalous)) == (12, 8, 20)
    import deepscan

    run_file = deepscan.read_run_file(tmp_path / "obj" / by_objects.loc[0, "run_file"])
    meta_ids = run_file.header["config"]["metadata"]
    assert meta_ids["clean_pool_ids"] == meta["id"].iloc[pools.clean].tolist()
    assert meta_ids["anomalous_pool_ids"] == meta["id"].iloc[pools.anomalous].tolist()
    assert run_file.header["config"]["clean_ssize"] == 4 and run_file.header["config"]["anom_ssize"] == 4
    with pytest.raises(TypeError, match="sample_sizes must be a SampleSizes"):
        ScanSettings(sample_sizes=(4, 4, 3))
    with pytest.raises(TypeError, match="settings must be a ScanSettings"):
        run_persona_scans(X, meta, plan, runs_dir=tmp_path / "x", settings={"detection": False}, **common)
    with pytest.raises(ValueError, match=r"levels: unknown level\(s\) \[3\]"):
        ScanPlan(["a"], layer=1, levels=[2, 3])
    with pytest.raises(TypeError, match="list of names"):
        ScanPlan("a", layer=1)
