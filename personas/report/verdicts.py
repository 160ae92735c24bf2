"""One rule from a claim's numbers to its verdict: supported, contradicted or inconclusive.

Every claim the report tests is reduced to a signed estimate (positive = the direction the
claim states, once multiplied by ``expected_sign``), an interval for it and, when the test
gives one, a p-value. :func:`claim_verdict` maps those numbers to one of three words by the
rule written out in ``docs/verdicts.md``:

- **supported**: the interval lies entirely above ``+band`` on the claimed side, and the
  p-value (when given) is at most ``significance``;
- **contradicted**: the interval lies entirely beyond ``-band`` on the other side, and the
  p-value (when given) is at most ``significance``;
- **inconclusive**: anything else: the interval reaches into ``[-band, +band]`` (an interval
  that touches 0 or a band edge counts as reaching it), or the interval and the p-value
  disagree. The reason says which.

:func:`agreement` summarises one claim's verdicts over replicates (statement-sampling seeds).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

__all__ = ["VERDICTS", "Verdict", "claim_verdict", "agreement", "across_models"]

#: The three verdicts, in the order the report lists them.
VERDICTS = ("supported", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict and the sentence that explains it.

    Attributes
    ----------
    label : {"supported", "contradicted", "inconclusive"}
    reason : str
        Why, in the numbers' own terms (e.g. "the interval [-0.01, 0.03] includes 0").
    """

    label: str
    reason: str

    def __post_init__(self) -> None:
        if self.label not in VERDICTS:
            raise ValueError(f"verdict label must be one of {VERDICTS}, got {self.label!r}")

    def __str__(self) -> str:
        return f"{self.label} ({self.reason})"


def _number(value, name: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    return out


def _fmt(x: float) -> str:
    return f"{x:.3g}" if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4) else f"{x:.4f}".rstrip("0").rstrip(".")


def _fmt_p(p: float, significance: float) -> str:
    """p with enough digits that it never prints equal to the significance level unless it is."""
    for digits in (3, 6, 12):
        text = f"{p:.{digits}g}"
        if p == significance or text != f"{significance:g}":
            return text
    return repr(p)


def _checked(estimate, ci_low, ci_high, p_value, expected_sign, band, significance) -> tuple:
    """The numbers of :func:`claim_verdict`, validated (the errors its docstring lists)."""
    estimate = _number(estimate, "estimate")
    lo, hi = _number(ci_low, "ci_low"), _number(ci_high, "ci_high")
    p = _number(p_value, "p_value", allow_none=True)
    band, significance = _number(band, "band"), _number(significance, "significance")
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be 1 or -1, got {expected_sign!r}")
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(estimate)):
        raise ValueError(f"estimate {estimate} and interval [{lo}, {hi}] must be finite; a claim without numbers "
                         "has no verdict (report it as missing)")
    if lo > hi:
        raise ValueError(f"interval [{lo}, {hi}] has ci_low > ci_high; pass the ends in order")
    if not lo <= estimate <= hi:
        raise ValueError(f"estimate {estimate} lies outside its interval [{lo}, {hi}]")
    if p is not None and not (0.0 <= p <= 1.0):
        raise ValueError(f"p_value must be in [0, 1] or None, got {p}")
    if not (math.isfinite(band) and band >= 0):
        raise ValueError(f"band must be a finite number >= 0, got {band}")
    if not 0.0 < significance < 1.0:
        raise ValueError(f"significance must be in (0, 1), got {significance}")

    return estimate, lo, hi, p, band, significance


def claim_verdict(
    estimate: float,
    ci_low: float | None,
    ci_high: float | None,
    p_value: float | None = None,
    *,
    expected_sign: int = 1,
    band: float = 0.0,
    significance: float = 0.05,
) -> Verdict:
    """The verdict of one claim from its numbers (the rule of ``docs/verdicts.md``).

    Parameters
    ----------
    estimate : float
        The claim's effect (e.g. a difference), on the scale where ``expected_sign`` says
        which side the claim predicts.
    ci_low, ci_high : float
        Its interval (``ci_low <= ci_high``). The verdict rests on the interval; the
        estimate must lie inside it. None (no interval): inconclusive, whatever the p-value.
    p_value : float, optional
        The p-value of a test of "no effect" (two-sided, or one-sided on the side the
        interval lies on); None when the claim has no test beside the interval.
    expected_sign : {1, -1}
        +1: the claim predicts a positive estimate; -1: a negative one.
    band : float
        Half-width of the inconclusive band around 0 (>= 0): an effect that cannot be told
        apart from ``[-band, band]`` is too small to count either way. Its edges belong to
        the band: an interval whose end equals ``band`` is inconclusive.
    significance : float
        Significance level in (0, 1) (docs/conventions.md: never ``alpha``); ``p_value ==
        significance`` counts as significant.

    Returns
    -------
    Verdict
        ``label`` ("supported", "contradicted" or "inconclusive") and ``reason``.

    Raises
    ------
    ValueError
        A non-finite interval, ``ci_low > ci_high``, an estimate outside its interval, a
        p-value outside [0, 1], a negative band, a ``significance`` outside (0, 1) or an
        ``expected_sign`` other than 1 or -1.
    """
    if ci_low is None or ci_high is None:
        return Verdict("inconclusive", "no interval for the estimate: the claim is not tested directly")
    estimate, lo, hi, p, band, significance = _checked(estimate, ci_low, ci_high, p_value, expected_sign, band,
                                                       significance)
    # orient so that "the claimed side" is positive
    s_lo, s_hi = sorted((expected_sign * lo, expected_sign * hi))
    interval = f"the interval [{_fmt(lo)}, {_fmt(hi)}]"
    where = "0" if band == 0 else f"the band [{_fmt(-band)}, {_fmt(band)}]"
    if s_lo > band:
        side = "supported"
    elif s_hi < -band:
        side = "contradicted"
    else:
        touches = s_lo == band or s_hi == -band or (band == 0 and (s_lo == 0 or s_hi == 0))
        return Verdict("inconclusive", f"{interval} {'touches' if touches else 'reaches into'} {where}")
    beyond = f"{interval} lies {'on the claimed side of' if side == 'supported' else 'opposite the claim, beyond'} {where}"
    if p is not None and p > significance:
        return Verdict("inconclusive", f"the methods disagree: {beyond}, but the test's p = "
                       f"{_fmt_p(p, significance)} > {significance:g}")
    return Verdict(side, beyond + ("" if p is None else f" and p = {_fmt_p(p, significance)} <= {significance:g}"))


def agreement(labels: Sequence[str]) -> dict:
    """One claim's verdicts over replicates: the most common one and the share that agree with it.

    Parameters
    ----------
    labels : sequence of str
        One verdict label per replicate (seed), each in ``VERDICTS``.

    Returns
    -------
    dict
        ``majority`` (the most common label; a tie between labels gives "inconclusive"),
        ``share`` (the fraction of replicates whose verdict is ``majority``), ``n`` and
        ``counts`` (``{label: count}``).
    """
    labels = list(labels)
    bad = [x for x in labels if x not in VERDICTS]
    if bad:
        raise ValueError(f"verdict labels must be in {VERDICTS}, got {bad}")
    if not labels:
        raise ValueError("no verdicts to summarise")
    counts = Counter(labels)
    top = max(counts.values())
    tied = [v for v in VERDICTS if counts.get(v) == top]
    majority = tied[0] if len(tied) == 1 else "inconclusive"  # a tie is no majority
    return {"majority": majority, "share": counts.get(majority, 0) / len(labels), "n": len(labels),
            "counts": {v: counts.get(v, 0) for v in VERDICTS}}


def across_models(verdicts: dict[str, str]) -> Verdict:
    """One verdict on a claim made "across models" from each model's own verdict (``docs/verdicts.md``).

    The claim is universal: **supported** when every model (at least two) supports it on its own
    (each after its untrained-model control); **contradicted** when any model contradicts it;
    otherwise **inconclusive**, naming the models that are.
    """
    if len(verdicts) < 2:
        return Verdict("inconclusive", f"a claim across models needs at least two models; got {len(verdicts)}")
    for label in verdicts.values():
        if label not in VERDICTS:
            raise ValueError(f"verdict label must be one of {VERDICTS}, got {label!r}")
    against = [m for m, v in verdicts.items() if v == "contradicted"]
    if against:
        return Verdict("contradicted", f"contradicted in {', '.join(against)}")
    open_ = [m for m, v in verdicts.items() if v != "supported"]
    if open_:
        return Verdict("inconclusive", f"not supported in {', '.join(open_)} (each model must support it)")
    return Verdict("supported", f"supported in each of the {len(verdicts)} models")
