"""Offline scorers of generated text, each gated like the readouts.

A *text scorer* turns texts (optionally with the prompts they answer) into one score per text.
A gated scorer is first scored on held-out ``+`` and ``-`` statements of the persona that are
used nowhere else; its **gate** is the bootstrap AUC interval of those scores (resampled within
each direction, as the readouts' gate): the scorer is *informative* when the interval excludes
0.5. An uninformative scorer still scores, but ``TextScores.informative`` is False, and nothing
should be concluded from its scores.

- ``persona_scorer``: logistic regression (scikit-learn, seeded) on all-MiniLM-L6-v2 embeddings
  of the persona's training statements; a score is the log-odds that a text reads like the
  persona's ``+`` statements.
- ``agreement_scorer``: the model's own agreement after the text: the mean log p of held-out
  ``+`` statements minus that of ``-`` statements, each as a continuation of the text (after its
  prompt). Its gate runs the same score after other held-out statements, shown as the
  assistant's reply to the readouts' ``NEUTRAL_PROMPT``.
- ``callable_scorer``: a user's ``(texts) -> scores``, gated when held-out statements are given.

Coherence metrics (not gated) are in :mod:`personas.causal.coherence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from personas._core.checks import check_float, check_int, check_seed
from personas._core.provenance import derive_rng
from personas.causal.stats import auc_interval
from personas.model.continuations import context_ids, continuation_logprobs
from personas.model.readouts import NEUTRAL_PROMPT
from personas.model.sentences import embed_sentences

__all__ = ["ScorerGate", "TextScorer", "TextScores", "scorer_gate", "persona_scorer", "agreement_scorer",
           "callable_scorer", "score_texts"]


@dataclass(frozen=True)
class ScorerGate:
    """A scorer's held-out AUC, ``+`` against ``-`` statements, with its bootstrap interval.

    ``informative``: the interval excludes 0.5 (the readouts' rule).
    """

    scorer: str
    n_positive: int
    n_negative: int
    auc: float
    auc_low: float
    auc_high: float
    informative: bool


@dataclass(frozen=True, eq=False)
class TextScorer:
    """A named scorer: ``fn(texts, prompts) -> scores (n,)``, its gate (None: ungated), what "higher" means."""

    name: str
    fn: Callable
    gate: ScorerGate | None
    higher: str


@dataclass(frozen=True, eq=False)
class TextScores:
    """Scores of texts by one scorer.

    Attributes
    ----------
    scorer : str
    scores : ndarray float64 ``(n_texts,)``
    gate : ScorerGate or None
    higher : str
        What a higher score means.
    """

    scorer: str
    scores: np.ndarray
    gate: ScorerGate | None
    higher: str

    @property
    def informative(self) -> bool | None:
        """The gate's verdict (None for an ungated scorer)."""
        return None if self.gate is None else self.gate.informative


def _checked(name: str, got, n: int) -> np.ndarray:
    try:
        arr = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scorer {name!r} returned {type(got).__name__}, not numbers") from exc
    if arr.shape != (n,):
        raise ValueError(f"scorer {name!r} returned shape {arr.shape}; expected ({n},), one score per text")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr))[:5].tolist()
        raise ValueError(f"scorer {name!r} returned non-finite scores at texts {bad}; scores must be finite")
    return arr


def _directions(statements: pd.DataFrame, name: str, min_each: int) -> tuple[list[str], np.ndarray]:
    """Texts and a bool ``positive`` array of a statements table, with at least ``min_each`` per direction."""
    if not isinstance(statements, pd.DataFrame) or not {"statement", "direction"} <= set(statements.columns):
        raise ValueError(f"{name} must be a statements DataFrame with 'statement' and 'direction' columns")
    positive = (statements["direction"] == "positive").to_numpy()
    negative = (statements["direction"] == "negative").to_numpy()
    if not (positive | negative).all():
        raise ValueError(f"{name}: direction must be 'positive' or 'negative'")
    if positive.sum() < min_each or negative.sum() < min_each:
        raise ValueError(f"{name} has {positive.sum()} positive and {negative.sum()} negative statements; "
                         f"at least {min_each} of each are needed")
    return [str(s).strip() for s in statements["statement"]], positive


def _disjoint(a: list[str], b: list[str], what: str) -> None:
    shared = sorted(set(a) & set(b))
    if shared:
        raise ValueError(f"{what} share {len(shared)} statements (e.g. {shared[0]!r}); held-out statements must "
                         "be used nowhere else")


def scorer_gate(name: str, scores, positive, *, seed: int = 0, n_boot: int = 1000, ci: float = 0.95) -> ScorerGate:
    """The gate of scores of held-out statements: AUC of ``+`` against ``-`` and its bootstrap interval.

    The bootstrap resamples statements within each direction, from a generator seeded by
    ``seed`` and ``name``.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = _checked(name, scores, len(positive))
    n_boot = check_int(n_boot, "n_boot", min_val=1)
    ci = check_float(ci, "ci", min_val=0.0, max_val=1.0, include_min=False, include_max=False)
    rng = derive_rng(check_seed(seed), name, "gate")
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    boot = pos[rng.integers(0, len(pos), (n_boot, len(pos)))], neg[rng.integers(0, len(neg), (n_boot, len(neg)))]
    auc, lo, hi = auc_interval(scores, positive, boot, ci)
    return ScorerGate(name, len(pos), len(neg), auc, lo, hi, not (lo <= 0.5 <= hi))


def persona_scorer(train: pd.DataFrame, heldout: pd.DataFrame, *, seed: int = 0, n_boot: int = 1000,
                   ci: float = 0.95, encoder=None) -> TextScorer:
    """Logistic regression on MiniLM embeddings of ``train``, gated by its AUC on ``heldout``.

    Parameters
    ----------
    train : DataFrame
        Statements (``statement``, ``direction``; ``persona`` names the scorer) the classifier fits.
    heldout : DataFrame
        Other statements of the persona, used nowhere else (at least 2 per direction): the gate.
    seed : int
        Seeds the classifier and the gate's bootstrap.
    encoder : (model, tokenizer), optional
        Sentence encoder (default all-MiniLM-L6-v2, :mod:`personas.model.sentences`).

    Returns
    -------
    TextScorer
        Scores: log-odds that a text reads like the ``+`` statements (prompts are ignored).
    """
    from sklearn.linear_model import LogisticRegression

    texts, y = _directions(train, "train", 1)
    held, positive = _directions(heldout, "heldout", 2)
    _disjoint(texts, held, "train and heldout")
    personas = sorted(set(train["persona"])) if "persona" in train.columns else []
    name = f"persona:{personas[0]}" if len(personas) == 1 else "persona"
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=check_seed(seed))
    clf.fit(embed_sentences(texts, encoder=encoder), y)

    def fn(texts, prompts=None):
        return clf.decision_function(embed_sentences(texts, encoder=encoder)) if len(texts) else np.zeros(0)

    gate = scorer_gate(name, fn(held), positive, seed=seed, n_boot=n_boot, ci=ci)
    return TextScorer(name, fn, gate, "reads more like the persona's + statements (log-odds)")


def agreement_scorer(model, tokenizer, statements: pd.DataFrame, gate_statements: pd.DataFrame, *, seed: int = 0,
                     n_boot: int = 1000, ci: float = 0.95, batch_size: int = 16) -> TextScorer:
    """The model's own agreement after a text: mean log p of ``+`` minus ``-`` held-out statements.

    Parameters
    ----------
    model : causal LM, run as it is (no intervention should be active)
    tokenizer : its tokenizer
    statements : DataFrame
        Held-out statements (``statement``, ``direction``) scored as continuations, at least 1 per
        direction. Each follows the text after a space: ``prompt + text + " " + statement``.
    gate_statements : DataFrame
        Other held-out statements (at least 2 per direction), used nowhere else: the gate scores
        each as the assistant's reply to the readouts' ``NEUTRAL_PROMPT``.
    seed, n_boot, ci :
        The gate's bootstrap.
    batch_size : int
        Continuations per forward pass.

    Returns
    -------
    TextScorer
        ``fn(texts, prompts)``: with prompts, each text is the answer to its prompt (rendered as
        :func:`personas.model.generation.steer_generate` renders it); without, the text stands alone.
    """
    conts, positive = _directions(statements, "statements", 1)
    gate_texts, gate_positive = _directions(gate_statements, "gate_statements", 2)
    _disjoint(conts, gate_texts, "statements and gate_statements")
    cont_ids = [list(tokenizer(" " + s, add_special_tokens=False)["input_ids"]) for s in conts]

    def fn(texts, prompts=None):
        prompts = [None] * len(texts) if prompts is None else list(prompts)
        if len(prompts) != len(texts):
            raise ValueError(f"got {len(prompts)} prompts for {len(texts)} texts; pass one prompt per text")
        ctx = [context_ids(tokenizer, t, p) for t, p in zip(texts, prompts)]
        lp = continuation_logprobs(model, ctx, cont_ids, batch_size=batch_size)  # (n_texts, n_statements)
        return lp[:, positive].mean(1) - lp[:, ~positive].mean(1)

    name = "agreement"
    gate = scorer_gate(name, fn(gate_texts, [NEUTRAL_PROMPT] * len(gate_texts)), gate_positive, seed=seed,
                       n_boot=n_boot, ci=ci)
    return TextScorer(name, fn, gate, "the model, having said the text, prefers the + statements (mean log p)")


def callable_scorer(fn: Callable, *, name: str | None = None, heldout: pd.DataFrame | None = None, seed: int = 0,
                    n_boot: int = 1000, ci: float = 0.95) -> TextScorer:
    """A user's ``fn(texts) -> scores``, gated by its AUC on ``heldout`` statements when given.

    Every call's result is checked: one finite score per text, else a ``ValueError`` naming the scorer.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable (texts) -> scores; got {type(fn).__name__}")
    name = name or getattr(fn, "__name__", type(fn).__name__)

    def wrapped(texts, prompts=None):
        return _checked(name, fn(list(texts)), len(texts))

    gate = None
    if heldout is not None:
        held, positive = _directions(heldout, "heldout", 2)
        gate = scorer_gate(name, wrapped(held), positive, seed=seed, n_boot=n_boot, ci=ci)
    return TextScorer(name, wrapped, gate, "as the callable defines it")


def score_texts(scorer: TextScorer, texts: Sequence[str], *, prompts: Sequence[str] | None = None) -> TextScores:
    """Score ``texts`` (answers to ``prompts`` when given) with a scorer; scores checked finite, one per text."""
    if not isinstance(scorer, TextScorer):
        raise TypeError(f"scorer must be a TextScorer (persona_scorer, agreement_scorer, callable_scorer); "
                        f"got {type(scorer).__name__}")
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not one string; wrap it in a list")
    texts = [str(t) for t in texts]
    if prompts is not None and len(prompts) != len(texts):
        raise ValueError(f"got {len(prompts)} prompts for {len(texts)} texts; pass one prompt per text")
    scores = _checked(scorer.name, scorer.fn(texts, None if prompts is None else list(prompts)), len(texts))
    return TextScores(scorer.name, scores, scorer.gate, scorer.higher)
