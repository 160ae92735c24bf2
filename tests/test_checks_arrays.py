"""The shared array, label and statements-table checks in personas._core.checks, and the derived seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personas._core.checks import (
    check_classes,
    check_directions,
    check_labels,
    check_matrix,
    check_meta,
)
from personas._core.provenance import derive_rng, derive_seed, seeded_rng
from personas.scans.pools import experiment_seed


def test_check_matrix():
    X = check_matrix([[1, 2], [3, 4]])
    assert X.dtype == np.float32 and X.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    f64 = np.ones((2, 3))
    assert check_matrix(f64) is f64  # floats kept as they are, no copy
    for bad, match in ((np.ones(3), "2-D"), (np.ones((0, 3)), "empty"), (np.array([["a"]]), "numbers"),
                       (np.array([[np.nan]]), "NaN")):
        with pytest.raises(ValueError, match=match):
            check_matrix(bad, "acts")
    with pytest.raises(ValueError, match="^acts must be a 2-D"):
        check_matrix(np.ones(3), "acts")


def test_check_labels_and_classes():
    assert check_labels(["a", "b"], 2, "y").tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="y has 1 labels but there are 2 statements"):
        check_labels(["a"], 2, "y")
    classes, counts = check_classes(np.array(["b", "a", "b"]), "y")
    assert classes.tolist() == ["a", "b"] and counts.tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"only one class \('a'\) for persona 'p'"):
        check_classes(np.array(["a", "a"]), "y", what=" for persona 'p'")
    with pytest.raises(ValueError, match=r"class 'a' has only 1 statements, fewer than n_folds=2"):
        check_classes(np.array(["b", "a", "b"]), "y", min_count=2)


def test_check_meta_and_directions():
    meta = pd.DataFrame({"persona": ["p", "p"], "direction": ["positive", "negative"]})
    assert check_meta(meta, 2, ["persona", "direction"]) is meta
    with pytest.raises(ValueError, match="meta has 2 rows but the activations have 3"):
        check_meta(meta, 3, ["persona"])
    with pytest.raises(ValueError, match=r"meta lacks columns \['id'\]"):
        check_meta(meta, 2, ["id"])
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        check_meta(meta.to_dict(), 2, ["persona"])
    with pytest.raises(ValueError, match=r"'positive' or 'negative'; got \['\+'\]"):
        check_directions(np.array(["+", "positive"]))


def test_the_two_seeded_generators():
    # the layer analyses' stream: one derived 32-bit seed; derive_rng: the whole entropy
    np.testing.assert_array_equal(seeded_rng(3, "cluster", "a", 1).random(4),
                                  np.random.default_rng(derive_seed(3, "cluster", "a", 1)).random(4))
    assert not np.allclose(seeded_rng(3, "x").random(4), derive_rng(3, "x").random(4))


def test_experiment_seed_is_derive_seed_of_the_published_entropy():
    # the entropy words, computed independently: study seed, level, CRC32 of the persona name
    import zlib

    for seed, persona, level in ((0, "agreeableness", 2), (7, "politically-liberal", 0)):
        ref = int(np.random.SeedSequence([seed, level, zlib.crc32(persona.encode())]).generate_state(1)[0])
        assert experiment_seed(seed, persona, level) == derive_seed(seed, level, persona) == ref
