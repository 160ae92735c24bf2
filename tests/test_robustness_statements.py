"""Statements and extraction inputs that used to be silently wrong: CSV types, empty files, bad values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personas.model.extraction import ExtractionSettings, extract_activations
from personas.statements import load_statements, persona_counts
from tiny_models import make_model, make_tokenizer


def _csv(tmp_path, text, name="own.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- CSV sources


def test_csv_columns_are_read_as_text(tmp_path):
    path = _csv(tmp_path, "id,persona,statement,direction\n"
                          "001,1,I like it,+\n002,1,I do not,-\n003,01,Yes,+\n004,01,No,-\n005,NA,None,+\n006,NA,x,-\n")
    df = load_statements("all", n_per_direction=1, source=path)
    assert sorted(df["persona"].unique()) == ["01", "1", "NA"]  # not merged into 1, not read as missing
    assert sorted(df["id"]) == ["001", "002", "003", "004", "005", "006"]  # leading zeros kept
    assert df.loc[df["id"] == "005", "statement"].item() == "None"  # the text, as written


def test_blank_id_is_an_error_not_float_ids(tmp_path):
    path = _csv(tmp_path, "id,persona,statement,direction\n1,p,a,+\n,p,b,-\n3,p,c,+\n4,p,d,-\n")
    with pytest.raises(ValueError, match=r"own.csv: id is blank in rows \[1\]"):
        load_statements("all", n_per_direction=None, source=path)


def test_empty_and_header_only_csv_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"empty.csv is empty \(0 bytes\)"):
        load_statements("all", source=_csv(tmp_path, "", "empty.csv"))
    with pytest.raises(ValueError, match=r"header.csv has a header but no statement rows"):
        load_statements("all", source=_csv(tmp_path, "persona,statement,direction\n", "header.csv"))
    with pytest.raises(ValueError, match="no statement rows"):
        load_statements("all", source=pd.DataFrame(columns=["persona", "statement", "direction"]))


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_label_confidence_outside_unit_interval(tmp_path, value):
    path = _csv(tmp_path, f"persona,statement,direction,label_confidence\np,a,+,0.9\np,b,-,{value}\n")
    with pytest.raises(ValueError, match=r"label_confidence must lie in \[0, 1\]; rows \[1\]"):
        load_statements("all", n_per_direction=None, source=path)


def test_none_and_nan_statements_in_a_frame_are_rejected():
    frame = pd.DataFrame({"persona": ["p"] * 3, "statement": ["a", None, np.nan], "direction": ["+", "-", "+"]})
    with pytest.raises(ValueError, match=r"empty persona/statement/direction values \(rows \[1, 2\]\)"):
        load_statements("all", source=frame)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(min_confidence="0.9"), ValueError, "min_confidence must lie in .*got '0.9'"),
        (dict(seed=-1), ValueError, "seed must be >= 0; got -1"),
        (dict(seed=1.5), TypeError, r"seed must be an int; got 1.5"),
        (dict(seed=True), TypeError, r"seed must be an int; got True"),
        (dict(n_per_direction=True), TypeError, "n_per_direction must be an int; got True"),
        (dict(n_per_direction=2.0), TypeError, "n_per_direction must be an int; got 2.0"),
        (dict(n_per_direction=0), ValueError, "n_per_direction must be >= 1; got 0"),
    ],
)
def test_parameters_are_validated_once(kwargs, error, message):
    with pytest.raises(error, match=message):
        load_statements("openness", **{"n_per_direction": 2, **kwargs})


def test_persona_counts_checks_min_confidence():
    with pytest.raises(ValueError, match="min_confidence must lie in"):
        persona_counts(min_confidence="0.9")


# --------------------------------------------------------------------------- extraction inputs


@pytest.fixture(scope="module")
def gpt2():
    # learned position embeddings (256 positions): a longer prompt used to crash with an index error
    return make_model("gpt2"), make_tokenizer(None)


def test_none_and_nan_statements_are_not_embedded_as_words(gpt2):
    model, tok = gpt2
    for bad in (None, float("nan"), np.nan, pd.NA):
        with pytest.raises(ValueError, match=r"statement 1 is .*not text"):
            extract_activations(model, tok, ["fine", bad], [0], ExtractionSettings(template="raw"), progress=False)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [(dict(layers=[True]), ValueError, r"layers must be .*a list of ints, got \[True\]"),
     (dict(layers=[1.0]), ValueError, r"layers must be .*a list of ints, got \[1.0\]"),
     (dict(batch_size=None), TypeError, "batch_size must be an int; got None"),
     (dict(batch_size=True), TypeError, "batch_size must be an int; got True"),
     (dict(batch_size=0), ValueError, "batch_size must be >= 1; got 0"),
     (dict(too_long="cut"), ValueError, "too_long must be one of")],
)
def test_extraction_parameters(gpt2, kwargs, error, message):
    model, tok = gpt2
    layers = kwargs.pop("layers", [0])
    with pytest.raises(error, match=message):
        extract_activations(model, tok, ["a statement"], layers, ExtractionSettings(**kwargs), progress=False)


def test_statement_longer_than_the_context(gpt2):
    model, tok = gpt2
    long = " ".join(["I like helping other people when they ask."] * 60)
    short = ["I am kind.", "I am rude."]
    with pytest.raises(ValueError, match=r"statement 1 \('I like helping.*\.\.\.'\) is \d+ tokens .* context of 256 tokens"):
        extract_activations(model, tok, [short[0], long, short[1]], [0, 2], ExtractionSettings(template="raw"), progress=False)
    for position in ("last", "mean"):
        with pytest.warns(RuntimeWarning, match=r"1 statement\(s\) longer than the model's context of 256 tokens"):
            acts, info = extract_activations(model, tok, [short[0], long, short[1]], [0, 2], ExtractionSettings(template="raw", position=position, too_long="truncate"), progress=False)
        assert info["context_limit"] == 256 and info["n_tokens"][1] == 256
        assert info["truncated"] == [{"index": 1, "n_tokens": info["truncated"][0]["n_tokens"], "kept_tokens": 256}]
        assert info["truncated"][0]["n_tokens"] > 256
        alone, _ = extract_activations(model, tok, short, [0, 2], ExtractionSettings(template="raw", position=position), progress=False)
        for layer in (0, 2):
            assert np.isfinite(acts[layer]).all()
            np.testing.assert_allclose(acts[layer][[0, 2]], alone[layer], atol=1e-5)  # the others are untouched
