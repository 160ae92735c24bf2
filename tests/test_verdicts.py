"""The verdict rule (docs/verdicts.md) at its boundaries: band edges, an interval touching 0, p at the significance level."""

from __future__ import annotations

import pytest

from personas.report.verdicts import VERDICTS, Verdict, agreement, claim_verdict


def label(*args, **kwargs) -> str:
    return claim_verdict(*args, **kwargs).label


def test_interval_clear_of_zero_on_each_side():
    assert label(0.5, 0.2, 0.8) == "supported"
    assert label(-0.5, -0.8, -0.2) == "contradicted"
    assert label(0.1, -0.2, 0.4) == "inconclusive"


def test_expected_sign_flips_the_claimed_side():
    assert label(-0.5, -0.8, -0.2, expected_sign=-1) == "supported"
    assert label(0.5, 0.2, 0.8, expected_sign=-1) == "contradicted"


def test_interval_touching_zero_is_inconclusive():
    v = claim_verdict(0.3, 0.0, 0.6)
    assert v.label == "inconclusive" and "touches 0" in v.reason
    assert label(-0.3, -0.6, 0.0) == "inconclusive"
    # the smallest step off 0 decides
    assert label(0.3, 1e-12, 0.6) == "supported"
    assert label(-0.3, -0.6, -1e-12) == "contradicted"


def test_band_edges_belong_to_the_band():
    band = 0.01
    v = claim_verdict(0.05, 0.01, 0.09, band=band)
    assert v.label == "inconclusive" and "touches the band [-0.01, 0.01]" in v.reason
    assert label(0.05, 0.010001, 0.09, band=band) == "supported"
    assert label(-0.05, -0.09, -0.01, band=band) == "inconclusive"
    assert label(-0.05, -0.09, -0.010001, band=band) == "contradicted"
    # an interval clear of 0 but inside the band: too small to count
    v = claim_verdict(0.005, 0.002, 0.008, band=band)
    assert v.label == "inconclusive" and "reaches into the band" in v.reason


def test_p_at_the_significance_level_counts_as_significant():
    assert label(0.5, 0.2, 0.8, 0.05, significance=0.05) == "supported"
    assert label(-0.5, -0.8, -0.2, 0.05, significance=0.05) == "contradicted"
    v = claim_verdict(0.5, 0.2, 0.8, 0.0500001, significance=0.05)
    assert v.label == "inconclusive" and "methods disagree" in v.reason and "p = 0.0500001 > 0.05" in v.reason
    assert "interval [0.2, 0.8] lies on the claimed side of 0" in v.reason


def test_issue_numbers_interval_excluding_zero_never_reads_as_no_difference():
    # the union interval [-0.038, -0.013] with p 0.016: contradicted; with p 0.0556: the methods disagree
    assert label(-0.025, -0.038, -0.013, 0.016) == "contradicted"
    v = claim_verdict(-0.025, -0.038, -0.013, 0.0556)
    assert v.label == "inconclusive" and "disagree" in v.reason and "no significant difference" not in v.reason


def test_small_p_does_not_rescue_an_interval_across_zero():
    v = claim_verdict(0.1, -0.1, 0.3, 0.001)
    assert v.label == "inconclusive" and "reaches into 0" in v.reason


def test_no_interval_is_inconclusive():
    v = claim_verdict(0.2, None, None, 0.001)
    assert v.label == "inconclusive" and "no interval" in v.reason


@pytest.mark.parametrize("args, kwargs, match", [
    ((0.1, 0.3, 0.2), {}, "ci_low > ci_high"),
    ((0.9, 0.1, 0.3), {}, "outside its interval"),
    ((0.2, 0.1, 0.3, 1.5), {}, "p_value"),
    ((0.2, 0.1, 0.3), {"band": -0.1}, "band"),
    ((0.2, 0.1, 0.3), {"significance": 0.0}, "significance"),
    ((0.2, 0.1, 0.3), {"expected_sign": 0}, "expected_sign"),
    ((0.2, float("nan"), 0.3), {}, "finite"),
])
def test_bad_numbers_are_named(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        claim_verdict(*args, **kwargs)


def test_verdict_label_is_checked():
    with pytest.raises(ValueError, match="verdict label"):
        Verdict("not supported", "x")


def test_agreement_share_and_ties():
    a = agreement(["supported", "supported", "inconclusive"])
    assert a["majority"] == "supported" and a["share"] == pytest.approx(2 / 3) and a["n"] == 3
    assert a["counts"] == {"supported": 2, "contradicted": 0, "inconclusive": 1}
    tie = agreement(["supported", "contradicted"])
    assert tie["majority"] == "inconclusive" and tie["share"] == 0.0
    assert agreement(["contradicted"])["share"] == 1.0
    assert set(a["counts"]) == set(VERDICTS)
    with pytest.raises(ValueError, match="verdict labels"):
        agreement(["maybe"])


def test_across_models_needs_every_model():
    from personas.report.verdicts import across_models

    assert across_models({"a": "supported", "b": "supported"}).label == "supported"
    got = across_models({"a": "supported", "b": "inconclusive", "c": "supported"})
    assert got.label == "inconclusive" and got.reason.startswith("not supported in b (")
    assert across_models({"a": "supported", "b": "contradicted"}).label == "contradicted"
    assert across_models({"a": "contradicted", "b": "inconclusive"}).label == "contradicted"
    assert across_models({"a": "supported"}).label == "inconclusive"
    with pytest.raises(ValueError, match="verdict label"):
        across_models({"a": "yes", "b": "supported"})
