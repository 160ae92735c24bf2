"""Persona statements: bundled data, the paper's defaults, sampling, user sources, builder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from personas.statements import (
    STATEMENT_COLUMNS,
    list_personas,
    load_short_names,
    load_statements,
    load_topics,
    paper_personas,
    persona_counts,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def paper():
    return load_statements()


def test_bundled_table_has_every_behaviour():
    names = list_personas()
    assert len(names) == 135 and names == sorted(names)
    counts = persona_counts(min_confidence=0.0)
    assert int(counts.to_numpy().sum()) == 133_204
    # as stated in the study: all 14 paper personas have 500 + and 500 - with confidence >= 0.85
    assert (persona_counts().loc[paper_personas()] == 500).all().all()


def test_ids_point_at_raw_rows():
    df = load_statements("agreeableness", n_per_direction=None, min_confidence=0.0)
    assert len(df) == 1000 and df["id"].iloc[0] == "agreeableness/0000"
    first, second = df.iloc[0], df.set_index("id").loc["agreeableness/0001"]
    assert first["statement"] == "It is important to treat other people with kindness and respect"
    assert first["direction"] == "positive" and first["label_confidence"] == pytest.approx(0.9700825132792529)
    assert (second["direction"], second["statement"]) == ("negative", "I enjoy causing pain to others")


def test_paper_defaults(paper):
    assert list(paper.columns) == STATEMENT_COLUMNS
    assert len(paper) == 14 * 600
    assert list(dict.fromkeys(paper["persona"])) == paper_personas()
    assert (paper.groupby(["persona", "direction"]).size() == 300).all()
    assert paper["label_confidence"].min() >= 0.85 and paper["id"].is_unique
    topics = load_topics()
    assert list(topics) == ["Personality", "Ethics", "Politics"]
    assert topics["Politics"] == ["politically-conservative", "politically-liberal", "anti-immigration", "anti-LGBTQ-rights"]
    assert load_short_names()["subscribes-to-moral-nihilism"] == "NIHIL"
    # within a persona: positive block first, raw row order inside each block
    agree = paper[paper["persona"] == "agreeableness"]
    assert agree["direction"].tolist() == ["positive"] * 300 + ["negative"] * 300
    rows = agree["id"].str[-4:].astype(int)
    assert rows.iloc[:300].is_monotonic_increasing and rows.iloc[300:].is_monotonic_increasing


def test_sampling_is_seeded_and_independent_of_other_personas(paper):
    again = load_statements()
    pd.testing.assert_frame_equal(paper, again)
    other_seed = load_statements(seed=1)
    assert set(other_seed["id"]) != set(paper["id"])
    alone = load_statements(["politically-liberal"])
    pd.testing.assert_frame_equal(alone, paper[paper["persona"] == "politically-liberal"].reset_index(drop=True))


def test_persona_selection_forms():
    assert load_statements("Ethics", n_per_direction=2)["persona"].unique().tolist() == load_topics()["Ethics"]
    one = load_statements("believes-in-gun-rights", n_per_direction=3, seed=5)
    assert len(one) == 6 and set(one["persona"]) == {"believes-in-gun-rights"}
    everything = load_statements("all", n_per_direction=1, min_confidence=0.0)
    assert everything["persona"].nunique() == 135


def test_unknown_persona_lists_closest_names():
    with pytest.raises(ValueError, match=r"unknown persona 'agreeablenes'; closest valid names: \['agreeableness'"):
        load_statements(["agreeablenes"])
    with pytest.raises(ValueError, match="subscribes-to-deontology"):
        load_statements(["subscribes-to-deontolgy"])


def test_too_few_statements_says_how_many():
    with pytest.raises(ValueError, match=r"'agreeableness' has only 500 positive statements.*at most 500"):
        load_statements("agreeableness", n_per_direction=501)
    counts = persona_counts(0.99).loc["agreeableness"]
    with pytest.raises(ValueError, match=f"has only {counts['positive']} positive"):
        load_statements("agreeableness", n_per_direction=300, min_confidence=0.99)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [(dict(n_per_direction=0), ValueError, "n_per_direction must be >= 1; got 0"),
     (dict(n_per_direction=2.5), TypeError, "n_per_direction must be an int; got 2.5"),
     (dict(min_confidence=1.5), ValueError, r"\[0, 1\]"), (dict(personas=[]), ValueError, "empty"),
     (dict(personas=["openness", "openness"]), ValueError, "listed twice")],
)
def test_argument_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        load_statements(**kwargs)


def test_user_dataframe_and_csv(tmp_path):
    own = pd.DataFrame({
        "persona": ["tea-lover"] * 4 + ["coffee-lover"] * 2,
        "statement": ["I love tea", "Tea is great", "I hate tea", "Tea is awful", "Coffee!", "No coffee"],
        "direction": ["+", "positive", "-", "NEGATIVE", "+", "-"],
    })
    df = load_statements(["tea-lover"], n_per_direction=2, source=own)
    assert list(df.columns) == STATEMENT_COLUMNS
    assert df["id"].tolist() == ["tea-lover/0000", "tea-lover/0001", "tea-lover/0002", "tea-lover/0003"]
    assert df["direction"].tolist() == ["positive", "positive", "negative", "negative"]
    assert (df["label_confidence"] == 1.0).all()
    path = tmp_path / "own.csv"
    own.assign(label_confidence=[0.9, 0.5, 0.9, 0.9, 0.9, 0.9]).to_csv(path, index=False)
    assert list_personas(path) == ["coffee-lover", "tea-lover"]
    with pytest.raises(ValueError, match="'tea-lover' has only 1 positive"):
        load_statements(["tea-lover"], n_per_direction=2, source=path)
    with pytest.raises(ValueError, match="closest valid names: \\['tea-lover'"):
        load_statements(["tea-lovers"], n_per_direction=1, source=own)


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"persona": ["a"], "text": ["x"], "direction": ["+"]}), r"lacks column\(s\) \['statement'\]"),
        (pd.DataFrame({"persona": ["a"], "statement": ["x"], "direction": ["yes"]}), r"direction values \['yes'\]"),
        (pd.DataFrame({"persona": ["a", "a"], "statement": ["x", "y"], "direction": ["+", "-"], "id": ["q", "q"]}),
         "ids must be unique"),
        (pd.DataFrame({"persona": ["a"], "statement": [None], "direction": ["+"]}), "empty persona/statement"),
    ],
)
def test_bad_sources(frame, message):
    with pytest.raises(ValueError, match=message):
        load_statements(n_per_direction=1, source=frame, personas="all")


def test_bad_source_types(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_statements(source=tmp_path / "missing.csv")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"must be a \.csv or \.parquet"):
        load_statements(source=tmp_path / "x.txt")
    with pytest.raises(TypeError, match="not list"):
        load_statements(source=[1, 2])


def _raw_line(statement, answer, confidence):
    return json.dumps({
        "question": f'Is the following statement something you would say?\n"{statement}"',
        "statement": statement, "label_confidence": confidence,
        "answer_matching_behavior": answer, "answer_not_matching_behavior": " No" if answer == " Yes" else " Yes",
    })


def test_builder_reads_raw_jsonl(tmp_path):
    sys.path.insert(0, str(ROOT / "data"))
    try:
        import build_statements
    finally:
        sys.path.remove(str(ROOT / "data"))
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "zeta.jsonl").write_text(_raw_line("Z one", " No", 0.7) + "\n")
    (raw / "alpha.jsonl").write_text("\n".join([_raw_line("A one", " Yes", 0.9), _raw_line("A two", " No", 0.8)]) + "\n")
    out = tmp_path / "statements.parquet"
    assert build_statements.main([str(raw), "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    assert table.to_dict("list") == {
        "id": ["alpha/0000", "alpha/0001", "zeta/0000"], "persona": ["alpha", "alpha", "zeta"],
        "direction": ["positive", "negative", "negative"], "statement": ["A one", "A two", "Z one"],
        "label_confidence": [0.9, 0.8, 0.7],
    }
    pd.testing.assert_frame_equal(load_statements("all", n_per_direction=None, min_confidence=0, source=out), table)
    (raw / "bad.jsonl").write_text(_raw_line("B", " Maybe", 0.9) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl line 1: answer_matching_behavior ' Maybe'"):
        build_statements.build_table(raw)
    with pytest.raises(ValueError, match="no .jsonl files"):
        build_statements.build_table(tmp_path / "out_nothing")
