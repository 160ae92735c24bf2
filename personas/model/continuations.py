"""Mean log-probability of token continuations after contexts, with each context run once.

For every pair ``(context, continuation)`` of token ids: the mean over the continuation's
tokens of ``log p(token | context, earlier continuation tokens)``. All but the last context
token run once per context (batch 1, KV cache); the continuations of a context then run in
right-padded batches that start at the context's last token (its logits predict the first
continuation token), as the likelihood readout does. Interventions active around a call apply.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch

from personas._core.checks import check_int
from personas.model.batching import accepts
from personas.model.generation import prompt_token_ids

__all__ = ["context_ids", "continuation_logprobs"]


def context_ids(tokenizer, text: str, prompt: str | None = None) -> list[int]:
    """Token ids of ``text`` as an answer: after the rendered ``prompt`` (as generation renders it), else alone.

    Without a prompt the text gets the tokenizer's special tokens (a BOS for decoders).
    """
    if prompt is None:
        return list(tokenizer(text, add_special_tokens=True)["input_ids"])
    head, _ = prompt_token_ids(tokenizer, prompt)
    return head + list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else head


def _prefix_cache(model, ids: list[int], device):
    if not ids:
        return None
    x = torch.tensor([ids], dtype=torch.long, device=device)
    kwargs = {"logits_to_keep": 1} if accepts(model, "logits_to_keep") else {}
    return model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=True, **kwargs).past_key_values


def _one_context(model, context: list[int], conts: list[list[int]], batch_size: int, device) -> np.ndarray:
    """Mean log p of each continuation after ``context`` (float64; NaN for an empty continuation)."""
    out = np.full(len(conts), np.nan)
    past = _prefix_cache(model, context[:-1], device)
    n_pre = len(context) - 1
    todo = [i for i, c in enumerate(conts) if c]
    for k in range(0, len(todo), batch_size):
        rows = todo[k : k + batch_size]
        width = max(len(conts[i]) for i in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            seq = [context[-1]] + conts[i][:-1]
            ids[r, : len(seq)], mask[r, : len(seq)] = torch.tensor(seq), 1
        kwargs = {"input_ids": ids.to(device),
                  "attention_mask": torch.cat([torch.ones((len(rows), n_pre), dtype=torch.long), mask], 1).to(device)}
        if accepts(model, "position_ids"):
            kwargs["position_ids"] = (n_pre + torch.arange(width)).expand(len(rows), width).to(device)
        if past is not None:
            cache = copy.deepcopy(past)
            cache.batch_repeat_interleave(len(rows))
            kwargs.update(past_key_values=cache, use_cache=True)
        elif accepts(model, "use_cache"):
            kwargs["use_cache"] = False
        logp = torch.log_softmax(model(**kwargs).logits.float(), dim=-1)
        for r, i in enumerate(rows):
            target = torch.tensor(conts[i], device=logp.device)
            out[i] = logp[r, : len(conts[i])].gather(1, target[:, None]).double().mean().item()
    return out


def continuation_logprobs(model, contexts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                          pairs: Sequence[tuple[int, int]] | None = None, *, batch_size: int = 16) -> np.ndarray:
    """Mean log p of continuations after contexts.

    Parameters
    ----------
    model : causal LM
    contexts : sequence of token-id lists
        Each at least one token long.
    continuations : sequence of token-id lists
        An empty continuation scores NaN.
    pairs : sequence of (context index, continuation index), optional
        Which pairs to score; None: every context with every continuation.
    batch_size : int
        Continuations per forward pass.

    Returns
    -------
    ndarray
        float64 ``(n_contexts, n_continuations)`` without ``pairs``, else ``(n_pairs,)``.
    """
    batch_size = check_int(batch_size, "batch_size", min_val=1)
    contexts = [list(map(int, c)) for c in contexts]
    continuations = [list(map(int, c)) for c in continuations]
    empty = [i for i, c in enumerate(contexts) if not c]
    if empty:
        raise ValueError(f"contexts {empty[:5]} have no tokens; a continuation needs at least one token before it")
    grid = pairs is None
    if grid:
        pairs = [(c, k) for c in range(len(contexts)) for k in range(len(continuations))]
    pairs = [(int(c), int(k)) for c, k in pairs]
    by_context: dict[int, list[int]] = {}
    for n, (c, _) in enumerate(pairs):
        by_context.setdefault(c, []).append(n)
    out = np.full(len(pairs), np.nan)
    device = model.get_input_embeddings().weight.device
    with torch.inference_mode():
        for c, members in by_context.items():
            out[members] = _one_context(model, contexts[c], [continuations[pairs[n][1]] for n in members],
                                        batch_size, device)
    return out.reshape(len(contexts), len(continuations)) if grid else out
