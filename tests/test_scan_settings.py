"""Pool and sample sizes as settings objects: the same scans as the keywords, checked fields."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personas.scans.driver import run_persona_scans, scan_pools
from personas.scans.settings import PoolSizes, SampleSizes


def _meta(n: int = 20) -> pd.DataFrame:
    rows = [{"id": f"{p}/{d}/{i}", "persona": p, "direction": d, "statement": f"{p} {d} {i}"}
            for p in ("a", "b") for d in ("positive", "negative") for i in range(n)]
    return pd.DataFrame(rows)


def test_paper_defaults_and_checks():
    assert (PoolSizes().background, PoolSizes().clean, PoolSizes().anomalous) == (250, 50, 300)
    assert (SampleSizes().clean, SampleSizes().anomalous, SampleSizes().n_runs) == (50, 50, 100)
    with pytest.raises(ValueError, match="pools.clean must be >= 1"):
        PoolSizes(clean=0)
    with pytest.raises(TypeError, match="samples.n_runs must be an int"):
        SampleSizes(n_runs=2.0)


def test_objects_give_the_same_scans_as_keywords(tmp_path):
    meta = _meta()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((len(meta), 5))
    X[(meta.persona == "a") & (meta.direction == "positive")] += 3.0
    common = dict(layer=1, model="toy", levels=[2], seed=0, detection=False, progress=False)
    by_keywords = run_persona_scans(X, meta, ["a"], runs_dir=tmp_path / "kw", background_size=12, clean_size=8,
                                    anomalous_size=20, clean_ssize=4, anom_ssize=4, n_runs=3, **common)
    by_objects = run_persona_scans(X, meta, ["a"], runs_dir=tmp_path / "obj", pools=PoolSizes(12, 8, 20),
                                   samples=SampleSizes(4, 4, 3), **common)
    pd.testing.assert_frame_equal(by_keywords, by_objects)
    assert by_objects.loc[0, "n_runs"] == 3
    # the pools are the ones scan_pools draws with those sizes
    pools = scan_pools(meta, "a", level=2, background_size=12, clean_size=8, anomalous_size=20, seed=0)
    assert (len(pools.background), len(pools.clean), len(pools.anomalous)) == (12, 8, 20)
    with pytest.raises(TypeError, match="either pools= or its keywords"):
        run_persona_scans(X, meta, ["a"], runs_dir=tmp_path / "x", pools=PoolSizes(12, 8, 20), clean_size=9, **common)
