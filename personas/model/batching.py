"""Prompts into model batches: tokenise, longest first, pad, positions from the mask.

One implementation for every forward pass over many prompts (activation extraction and the
answers of the causal check):

- ``tokenize_prompts``: token ids per prompt and, when asked, the statement's tokens.
- ``token_ids``: token ids of plain texts (no padding, no truncation).
- ``pad_token_id``: the id padded positions get (any id works: they are masked out).
- ``longest_first``: batches of row indices, longest prompts first.
- ``pad_batch``: a rectangle of ids, its attention mask and each row's first real column.
- ``position_ids``: positions counted over real tokens only, so left padding equals right padding.
- ``model_inputs``: the keyword arguments of one forward pass, for the arguments the model takes.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import torch

from personas.model.prompts import Prompts

__all__ = ["tokenize_prompts", "token_ids", "pad_token_id", "longest_first", "pad_batch", "position_ids",
           "accepts", "model_inputs"]


def tokenize_prompts(tokenizer, prompts: Prompts, need_spans: bool) -> tuple[list[list[int]], list[list[int]] | None]:
    """Token ids per prompt, and (if ``need_spans``) the indices of the statement's tokens.

    A token belongs to the statement when its character offsets overlap the
    statement's span (zero-width special tokens never do).

    Returns
    -------
    (list of list of int, list of list of int or None)
        ``input_ids`` per prompt (no padding) and statement token indices per prompt.
    """
    kwargs = {"add_special_tokens": prompts.add_special_tokens, "padding": False, "truncation": False}
    if need_spans:
        try:
            enc = tokenizer(prompts.texts, return_offsets_mapping=True, **kwargs)
        except (NotImplementedError, TypeError, ValueError) as exc:
            raise ValueError(
                "positions 'last_statement_token' and 'mean' need a fast tokenizer with offset mappings; "
                f"{type(tokenizer).__name__} has none ({exc}); use position='last'"
            ) from exc
    else:
        enc = tokenizer(prompts.texts, **kwargs)
    ids = [list(x) for x in enc["input_ids"]]
    if not need_spans:
        return ids, None
    token_sets = []
    for i, (offsets, (start, end)) in enumerate(zip(enc["offset_mapping"], prompts.spans)):
        idx = [t for t, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
        if not idx:
            raise ValueError(f"no token of prompt {i} overlaps its statement {prompts.texts[i][start:end]!r}")
        token_sets.append(idx)
    return ids, token_sets


def token_ids(tokenizer, texts: Sequence[str], *, add_special_tokens: bool) -> list[list[int]]:
    """Token ids of each text, unpadded and untruncated."""
    enc = tokenizer(list(texts), add_special_tokens=add_special_tokens, padding=False, truncation=False)
    return [list(x) for x in enc["input_ids"]]


def pad_token_id(tokenizer) -> int:
    """The tokenizer's pad id, else its end-of-sequence id, else 0: padded positions are masked out."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0


def longest_first(ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Row indices in batches of ``batch_size``, longest prompts first.

    Similar lengths share a batch (little padding), and memory trouble shows in the first batch.
    """
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def pad_batch(ids: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad to a rectangle on ``side`` ("left" or "right").

    Returns
    -------
    input_ids, attention_mask : LongTensor (batch, width)
    first : LongTensor (batch,)
        Each row's first real column.
    """
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    first = torch.zeros(len(ids), dtype=torch.long)
    for r, x in enumerate(ids):
        start = width - len(x) if side == "left" else 0
        input_ids[r, start : start + len(x)] = torch.tensor(x, dtype=torch.long)
        mask[r, start : start + len(x)] = 1
        first[r] = start
    return input_ids, mask, first


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only (``(batch, width)``): padding leaves them unchanged."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def accepts(model, name: str) -> bool:
    """Whether ``model.forward`` takes the keyword ``name``."""
    return name in inspect.signature(model.forward).parameters


def model_inputs(model, input_ids: torch.Tensor, mask: torch.Tensor, device) -> dict:
    """Keyword arguments of one forward pass on ``device``: ids, mask, and when the model takes them,
    ``position_ids`` from the mask and ``use_cache=False``."""
    inputs = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
    if accepts(model, "position_ids"):
        inputs["position_ids"] = position_ids(mask).to(device)
    if accepts(model, "use_cache"):
        inputs["use_cache"] = False
    return inputs
