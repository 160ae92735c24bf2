"""Coherence of generated text: what steering costs, measured offline (no gate: these are not persona scores).

- ``text_nll``: the mean negative log-likelihood per token of the text under the model given
  (run it unsteered), after its prompt when given. Higher: less expected by the model.
- ``distinct_2``: distinct word bigrams over all word bigrams of the text (words: whitespace-split,
  case kept). 1 = no bigram repeats; lower = more repetitive. NaN for fewer than two words.
- ``zlib_ratio``: ``len(zlib.compress(b, 9)) / len(b)`` of the text's UTF-8 bytes ``b``. Lower =
  more repetitive (it compresses better); short texts can exceed 1 (the zlib header). NaN for "".
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from personas.model.continuations import context_ids, continuation_logprobs

__all__ = ["CoherenceScores", "distinct_2", "zlib_ratio", "text_nll", "coherence_scores"]


@dataclass(frozen=True, eq=False)
class CoherenceScores:
    """Per-text coherence metrics, each float64 ``(n_texts,)`` (module docstring for their direction)."""

    nll: np.ndarray
    distinct_2: np.ndarray
    zlib_ratio: np.ndarray


def _texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not one string; wrap it in a list")
    return [str(t) for t in texts]


def distinct_2(texts: Sequence[str]) -> np.ndarray:
    """Distinct word bigrams / word bigrams per text (NaN below two words)."""
    out = []
    for text in _texts(texts):
        words = text.split()
        bigrams = list(zip(words, words[1:]))
        out.append(len(set(bigrams)) / len(bigrams) if bigrams else np.nan)
    return np.asarray(out, dtype=np.float64)


def zlib_ratio(texts: Sequence[str]) -> np.ndarray:
    """Compressed / raw length of each text's UTF-8 bytes (zlib level 9; NaN for an empty text)."""
    out = []
    for text in _texts(texts):
        raw = text.encode("utf-8")
        out.append(len(zlib.compress(raw, 9)) / len(raw) if raw else np.nan)
    return np.asarray(out, dtype=np.float64)


def text_nll(model, tokenizer, texts: Sequence[str], *, prompts: Sequence[str] | None = None,
             batch_size: int = 16) -> np.ndarray:
    """Mean NLL per token of each text under ``model``, after its prompt when given (NaN for no tokens).

    Without prompts a text is scored alone, from the tokenizer's special tokens (its BOS); a
    tokenizer without any gives its first token no score (it becomes the context).
    """
    texts = _texts(texts)
    if prompts is not None and len(prompts) != len(texts):
        raise ValueError(f"got {len(prompts)} prompts for {len(texts)} texts; pass one prompt per text")
    contexts, conts, pairs, where = [], [], [], {}
    for k, text in enumerate(texts):
        body = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if prompts is None:
            full = context_ids(tokenizer, text)
            n = len(full) - len(body)
            head = full[:n] if n > 0 and full[n:] == body else []
            if not head:  # no leading special token: the first token is the context
                head, body = body[:1], body[1:]
        else:
            head = context_ids(tokenizer, "", prompts[k])
        key = tuple(head or [0])  # an empty text without special tokens: nothing to score (NaN)
        if key not in where:  # the texts after one context share its pass and their batches
            where[key] = len(contexts)
            contexts.append(list(key))
        conts.append(body if head else [])
        pairs.append((where[key], k))
    lp = continuation_logprobs(model, contexts, conts, pairs=pairs, batch_size=batch_size)
    return -lp


def coherence_scores(model, tokenizer, texts: Sequence[str], *, prompts: Sequence[str] | None = None,
                     batch_size: int = 16) -> CoherenceScores:
    """NLL under ``model`` (run it unsteered), distinct-2 and zlib ratio of each text."""
    texts = _texts(texts)
    return CoherenceScores(text_nll(model, tokenizer, texts, prompts=prompts, batch_size=batch_size),
                           distinct_2(texts), zlib_ratio(texts))
