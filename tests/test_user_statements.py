"""A researcher's own statements and topics files: every bad input gets a clear error before any work."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from personas.statements import load_statements, study_inputs
from personas.statements import bundled

N = 6  # statements per direction in the small files below


def _rows(personas=("mine-a", "mine-b"), n=N):
    return [{"persona": p, "direction": d, "statement": f"{p}: a {d} statement, number {i}"}
            for p in personas for d in ("positive", "negative") for i in range(n)]


def _csv(tmp_path, rows, name="mine.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _topics(tmp_path, topics, name="topics.json"):
    path = tmp_path / name
    path.write_text(json.dumps(topics), encoding="utf-8")
    return path


def test_user_personas_join_the_paper_ones_with_their_topics(tmp_path):
    path = _csv(tmp_path, _rows())
    topics = _topics(tmp_path, {"Mine": ["mine-a", "mine-b"], "Personality": ["agreeableness"]})
    inputs = study_inputs(statements_file=path, topics_file=topics, n_per_direction=N)
    assert inputs.personas[-2:] == ["mine-a", "mine-b"] and len(inputs.personas) == 16
    assert inputs.user_personas == ["mine-a", "mine-b"]
    # the paper's other 13 are in no topic of this file: each is its own group in the node analysis
    assert len(inputs.untopiced) == 13 and "agreeableness" not in inputs.untopiced
    groups = inputs.groups_of(["mine-a", "mine-b", "openness"])
    assert groups == {"Mine": ["mine-a", "mine-b"], "openness": ["openness"]}
    assert inputs.files["statements_file"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert inputs.files["topics_file"]["sha256"] == hashlib.sha256(topics.read_bytes()).hexdigest()
    drawn = load_statements(["mine-b", "agreeableness"], n_per_direction=N, source=inputs.table)
    assert drawn.groupby(["persona", "direction"]).size().to_dict() == {
        ("agreeableness", "negative"): N, ("agreeableness", "positive"): N,
        ("mine-b", "negative"): N, ("mine-b", "positive"): N}
    assert drawn.loc[drawn["persona"] == "mine-b", "id"].iloc[0] == "mine-b/0000"


def test_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"statements file .*nope\.csv does not exist"):
        study_inputs(statements_file=tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match=r"topics file .*nope\.json does not exist"):
        study_inputs(topics_file=tmp_path / "nope.json")
    with pytest.raises(ValueError, match="is a directory"):
        study_inputs(statements_file=tmp_path)


def test_an_unreadable_file(tmp_path, monkeypatch):
    path = _csv(tmp_path, _rows())

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(bundled, "open", denied, raising=False)  # as root, chmod 000 would not stop us
    with pytest.raises(ValueError, match=r"mine\.csv cannot be read \(Permission denied\); check its permissions"):
        study_inputs(statements_file=path)


def test_a_damaged_parquet_file(tmp_path):
    path = tmp_path / "mine.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="is not a readable Parquet file"):
        study_inputs(statements_file=path)


def test_wrong_columns(tmp_path):
    path = _csv(tmp_path, [{"name": "mine-a", "text": "x", "direction": "positive"}])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['persona', 'statement'\].*Columns found: "
                                         r"\['name', 'text', 'direction'\]"):
        study_inputs(statements_file=path)


def test_empty_statements(tmp_path):
    rows = _rows()
    rows[3]["statement"] = "   "
    with pytest.raises(ValueError, match=r"blank statement values \(rows \[3\]\)"):
        study_inputs(statements_file=_csv(tmp_path, rows))
    rows[3]["statement"] = ""
    with pytest.raises(ValueError, match=r"empty persona/statement/direction values \(rows \[3\]\)"):
        study_inputs(statements_file=_csv(tmp_path, rows))


def test_duplicated_statements(tmp_path):
    rows = _rows()
    rows[8]["statement"] = rows[1]["statement"].upper() + " "  # the same words, another direction and case
    with pytest.raises(ValueError, match=r"2 rows repeat a statement of their persona, e.g. persona 'mine-a' "
                                         r"rows \[1, 8\]"):
        study_inputs(statements_file=_csv(tmp_path, rows))
    rows[8]["persona"] = "mine-b"  # another persona may say the same
    study_inputs(statements_file=_csv(tmp_path, rows))


def test_fewer_statements_than_n_per_direction_says_how_many(tmp_path):
    rows = [r for r in _rows() if not (r["persona"] == "mine-b" and r["direction"] == "negative"
                                       and r["statement"].endswith(("4", "5")))]
    with pytest.raises(ValueError, match=r"persona 'mine-b' has only 4 negative statements .*"
                                         r"n_per_direction=6 requested.*at most 4"):
        study_inputs(statements_file=_csv(tmp_path, rows), n_per_direction=N)


def test_a_bundled_name_needs_prefer(tmp_path):
    rows = _rows(("agreeableness", "mine-a"))
    path = _csv(tmp_path, rows)
    with pytest.raises(ValueError, match=r"persona\(s\) \['agreeableness'\] are also bundled personas; rename them "
                                         r".*prefer='user' or prefer='bundled'"):
        study_inputs(statements_file=path)
    mine = study_inputs(["agreeableness"], statements_file=path, prefer="user", n_per_direction=N)
    drawn = load_statements(["agreeableness"], n_per_direction=None, min_confidence=0.0, source=mine.table)
    assert len(drawn) == 2 * N and drawn["statement"].str.startswith("agreeableness: a").all()
    theirs = study_inputs(["agreeableness"], statements_file=path, prefer="bundled", n_per_direction=300)
    drawn = load_statements(["agreeableness"], n_per_direction=None, min_confidence=0.0, source=theirs.table)
    assert len(drawn) == 1000  # the bundled ones, all of them
    with pytest.raises(ValueError, match="prefer must be one of"):
        study_inputs(statements_file=path, prefer="mine")


@pytest.mark.parametrize("names, clash", [
    # file names are collision-proof (personas._core.names.file_stem): only case folding can make two names one
    (("Mine-a", "mine-A"), r"persona 'mine-A' and the persona 'Mine-a' would share file names"),
    (("Agreeableness",), r"persona 'Agreeableness' and the persona 'agreeableness' would share file names"),
    (("???",), r"persona name '\?\?\?' has no letters or digits"),
])
def test_names_that_collide_once_made_safe_for_a_file_name(tmp_path, names, clash):
    rows = _rows(names)
    with pytest.raises(ValueError, match=clash):
        study_inputs(statements_file=_csv(tmp_path, rows))


def test_topics_naming_unknown_personas_or_one_persona_twice(tmp_path):
    path = _csv(tmp_path, _rows())
    unknown = _topics(tmp_path, {"Mine": ["mine-a", "mine-c"], "Other": ["agreeablenes"]})
    with pytest.raises(ValueError, match=r"names persona\(s\) \['mine-c', 'agreeablenes'\] that are neither "
                                         r"bundled nor in the statements file; 'mine-c': did you mean \['mine-b', 'mine-a'\]\?; "
                                         r"'agreeablenes': did you mean \['agreeableness'\]\?"):
        study_inputs(statements_file=path, topics_file=unknown)
    twice = _topics(tmp_path, {"Mine": ["mine-a", "mine-b"], "Other": ["mine-b"]})
    with pytest.raises(ValueError, match=r"persona 'mine-b' is in 'Mine' and in topic 'Other'; a persona belongs "
                                         r"to one topic at most"):
        study_inputs(statements_file=path, topics_file=twice)
    shape = _topics(tmp_path, {"Mine": "mine-a"})
    with pytest.raises(ValueError, match=r"topic 'Mine' must be a non-empty list of persona names"):
        study_inputs(statements_file=path, topics_file=shape)


def test_non_utf8_text(tmp_path):
    rows = _rows()
    rows[4]["statement"] = "I like café au lait"
    path = tmp_path / "latin1.csv"
    pd.DataFrame(rows).to_csv(path, index=False, encoding="latin-1")
    with pytest.raises(ValueError, match=r"latin1\.csv is not UTF-8 text \(byte 0xe9 on line 6\); save it as UTF-8"):
        study_inputs(statements_file=path)
    topics = tmp_path / "topics.json"
    topics.write_bytes('{"Café": ["mine-a"]}'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"topics file .*topics\.json is not UTF-8 text \(byte 0xe9"):
        study_inputs(statements_file=_csv(tmp_path, _rows()), topics_file=topics)
    # UTF-8 with a byte-order mark (as spreadsheet programs write it) is fine
    bom = tmp_path / "bom.csv"
    pd.DataFrame(rows).to_csv(bom, index=False, encoding="utf-8-sig")
    assert study_inputs(statements_file=bom).user_personas == ["mine-a", "mine-b"]


def test_the_study_refuses_bad_input_before_writing_anything(tmp_path, capsys):
    from personas.study.cli import main

    rows = _rows()
    rows[2]["statement"] = rows[0]["statement"]
    path = _csv(tmp_path, rows)
    with pytest.raises(SystemExit) as exit_info:
        main(["--quick", "--statements", str(path), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "repeat a statement of their persona" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):  # the quick study draws 40 per direction: 6 are too few
        main(["--quick", "--statements", str(_csv(tmp_path, _rows())), "--output", str(tmp_path / "out")])
    assert "has only 6 positive statements" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
