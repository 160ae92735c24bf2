"""Steered text: greedy (or seeded sampled) generation with a vector added at one layer.

``steer_generate`` decodes its own loop with a KV cache over left-padded batches (positions
counted over real tokens, so a text does not depend on the batch it sits in) and adds
``alpha * vector`` to the hidden state at ``layer`` through the hook placement of
:func:`personas.model.interventions.edit_layer` (0 = embeddings, i = output of block i,
``n_blocks`` = the final norm's output).

Which positions are edited (``GENERATION_POSITIONS``), in terms of the forward calls of the
cached loop (one prefill call on the prompt, then one call per fed-back token):

- ``"all"``: every real (non-pad) position of every call: all prompt tokens and every
  generated token fed back. Equals a no-cache recomputation that edits every position.
- ``"prompt"``: the real prompt tokens only, in the prefill call; decoding steps are unedited
  (their attention still reads the edited prompt keys and values).
- ``"generated"``: in every call, exactly the one position whose logits choose the next
  token: the **last prompt token** in the prefill call (it produces the first generated
  token), then each fed-back generated token. So each row gets one edit per generated token,
  and the first generated token is already steered. ``"prompt"`` and ``"generated"`` share
  the last prompt token; together they make ``"all"``.

The steering vectors: ``directions`` holds the vector to add at ``alpha = 1``, i.e. the
*already scaled* vector. The project's convention is ``alpha * scale * unit`` with ``scale``
the mean norm of the hidden states at the layer (:func:`personas.causal.arms.persona_geometry`),
so pass ``scale * unit``; random control directions of the same norm are ``scale * r`` for
unit vectors ``r`` (what :func:`personas.causal.text_arm.steered_text_arm` does).

Prompts are rendered as the readouts render theirs: a user turn with the chat template and
its generation prompt (mode ``"user"``) when the tokenizer has a template, else the raw text
followed by a newline with the tokenizer's special tokens (mode ``"raw"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from personas._core.checks import check_choice, check_float, check_int, check_seed, check_str
from personas._core.provenance import derive_rng
from personas.model.batching import accepts, pad_batch, pad_token_id, position_ids
from personas.model.hooks import layer_info
from personas.model.interventions import edit_layer
from personas.model.readouts import prompt_mode, user_turn_ids

__all__ = ["GENERATION_POSITIONS", "NEUTRAL_PROMPTS", "Placement", "Sampling", "prompt_token_ids", "steer_generate"]

GENERATION_POSITIONS = ("all", "prompt", "generated")

#: Neutral user turns for any persona: none names a trait, each invites the model to talk about itself.
NEUTRAL_PROMPTS = (
    "Tell me about yourself.",
    "What matters most in life?",
    "How do you usually spend a free afternoon?",
    "What do you think about other people?",
    "Describe a decision you would find hard to make.",
    "What is your opinion on rules?",
    "How would your friends describe you?",
    "What would you change about the world?",
)

COLUMNS = ["prompt_index", "prompt", "mode", "layer", "positions", "arm", "draw", "alpha", "text", "token_ids",
           "logprobs", "n_tokens", "finished"]


@dataclass(frozen=True)
class Placement:
    """Where the edit lands: a layer, and where the blocks and the final norm are.

    ``blocks_path`` and ``final_norm`` are ``ExtractionSettings``' overrides
    (:mod:`personas.model.hooks`), so an edit lands where extraction reads.
    """

    layer: int
    blocks_path: str | None = None
    final_norm: str | None = "auto"


@dataclass(frozen=True)
class Sampling:
    """Seeded sampling instead of greedy decoding.

    Attributes
    ----------
    seed : int
        Each row (prompt, arm, draw, alpha) draws from its own generator, seeded by ``seed``
        and the row, so a text does not depend on the batch or the other rows.
    temperature : float
        Logits are divided by it before the softmax (> 0).
    """

    seed: int = 0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        check_seed(self.seed)
        check_float(self.temperature, "temperature", min_val=0.0, include_min=False)


def prompt_token_ids(tokenizer, prompt: str) -> tuple[list[int], str]:
    """Token ids of one prompt as generation sees it, and the mode (``"user"`` or ``"raw"``).

    With a chat template: the prompt as a user message, generation prompt appended, tokenised
    without extra special tokens (the template holds them). Without: ``prompt + "\\n"`` with
    the tokenizer's special tokens (BOS for decoders).
    """
    prompt = check_str(prompt, "prompt")
    ids = user_turn_ids(tokenizer, prompt, raw_frame="{prompt}\n")  # the readouts' rendering, raw frame: the prompt
    return ids, "user" if prompt_mode(tokenizer) == "chat" else "raw"


def _steering_vectors(directions, hidden: int) -> list[tuple[str, int, np.ndarray]]:
    """``(arm, draw, vector)`` from one vector (arm ``"direction"``) or ``{arm: (hidden,) or (k, hidden)}``."""
    if not isinstance(directions, Mapping):
        directions = {"direction": directions}
    if not directions:
        raise ValueError("directions is empty; pass a vector or {arm: vector(s)}")
    out = []
    for arm, value in directions.items():
        check_str(arm, "arm name")
        arr = np.asarray(value, dtype=np.float32)
        arr = arr[None] if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[1] != hidden:
            raise ValueError(f"directions[{arm!r}] must have shape ({hidden},) or (n_draws, {hidden}); "
                             f"got {np.shape(value)}")
        if not np.isfinite(arr).all():
            raise ValueError(f"directions[{arm!r}] holds non-finite values")
        out += [(arm, k, arr[k]) for k in range(len(arr))]
    return out


class _Edit:
    """What the hook adds where: per-row vectors ``delta (b, hidden)`` at ``mask (b, seq)``."""

    def __init__(self) -> None:
        self.delta: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        if self.mask is None or not bool(self.mask.any()):
            return h
        delta = self.delta.to(device=h.device, dtype=h.dtype)[:, None, :]
        return torch.where(self.mask.to(h.device)[..., None], h + delta, h)


def _choose(logits: torch.Tensor, sampling: Sampling | None, rngs: list) -> torch.Tensor:
    """Next token per row: argmax, or a seeded draw from ``softmax(logits / temperature)``."""
    if sampling is None:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.double() / sampling.temperature, dim=-1).cpu().numpy()
    cdf = np.cumsum(probs, axis=1)
    picks = [min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), len(c) - 1) for c, rng in zip(cdf, rngs)]
    return torch.tensor(picks, dtype=torch.long, device=logits.device)


def _decode(model, ids: list[list[int]], edit: _Edit, steered: torch.Tensor, positions: str, max_new_tokens: int,
            stop: set, pad_id: int, sampling: Sampling | None, rngs: list) -> tuple[list, list, list]:
    """One left-padded batch through the cached loop: generated ids, their log p, whether each row stopped."""
    device = model.get_input_embeddings().weight.device
    input_ids, mask, _ = pad_batch(ids, pad_id, "left")
    b = len(ids)
    kwargs = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "use_cache": True}
    pos = position_ids(mask).to(device)
    if accepts(model, "position_ids"):
        kwargs["position_ids"] = pos
    if accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = 1
    if positions == "generated":  # the last column: every row's last prompt token under left padding
        first = torch.zeros_like(mask, dtype=torch.bool)
        first[:, -1] = True
    else:
        first = mask.bool()
    edit.mask = first & steered[:, None]
    tokens, logps, done = [[] for _ in range(b)], [[] for _ in range(b)], torch.zeros(b, dtype=torch.bool)
    for step in range(max_new_tokens):
        out = model(**kwargs)
        logits = out.logits[:, -1].float()
        nxt = _choose(logits, sampling, rngs)
        logp = torch.log_softmax(logits, dim=-1).gather(1, nxt[:, None])[:, 0].cpu()
        for r in np.flatnonzero(~done.numpy()):
            tokens[r].append(int(nxt[r]))
            logps[r].append(float(logp[r]))
        done |= torch.tensor([int(t) in stop for t in nxt.tolist()])
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        nxt = torch.where(done.to(nxt.device), torch.full_like(nxt, pad_id), nxt)
        mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype)], dim=1)
        pos = pos[:, -1:] + 1
        kwargs.update(input_ids=nxt[:, None], attention_mask=mask.to(device), past_key_values=out.past_key_values)
        if "position_ids" in kwargs:
            kwargs["position_ids"] = pos
        edit.mask = None if positions == "prompt" else steered[:, None]
    return tokens, logps, done.tolist()


def _stop_ids(model, tokenizer) -> set:
    """End-of-sequence ids: the generation config's (one or a list), else the tokenizer's."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return set() if eos is None else {int(e) for e in np.atleast_1d(eos).tolist()}


def _check_alphas(alphas) -> list[float]:
    try:
        values = [check_float(a, "alphas entry") for a in alphas]
    except TypeError as exc:
        raise ValueError(f"alphas must be a sequence of numbers, e.g. (0.0, 4.0); got {alphas!r}") from exc
    if not values:
        raise ValueError("alphas is empty; pass e.g. (0.0, 4.0)")
    return list(dict.fromkeys(values))


def _rows(n_prompts: int, vectors: list, alphas: list[float]) -> list[tuple[int, int | None, float]]:
    """Rows to decode: ``(prompt, vector index or None for the unsteered baseline, alpha)``."""
    rows = [(p, None, 0.0) for p in range(n_prompts)] if 0.0 in alphas else []
    return rows + [(p, v, a) for p in range(n_prompts) for v in range(len(vectors)) for a in alphas if a != 0.0]


def steer_generate(model, tokenizer, prompts: Sequence[str], directions, layer: int, alphas, *,
                   positions: str = "all", max_new_tokens: int = 40, sampling: Sampling | None = None,
                   batch_size: int = 16) -> pd.DataFrame:
    """Generate from each prompt with ``alpha * vector`` added at ``layer``: one row per text.

    Parameters
    ----------
    model : causal LM (``load_model(..., head=True)``)
    tokenizer : its tokenizer
    prompts : sequence of str
        User turns (see the module docstring for how they are rendered; the mode is recorded).
    directions : array ``(hidden,)`` or dict ``{arm: array (hidden,) or (n_draws, hidden)}``
        The vector added at ``alpha = 1`` (already scaled: pass ``scale * unit``). A bare array is
        arm ``"direction"``; a 2-D array gives draws ``0..n_draws-1`` of one arm, e.g.
        ``{"direction": s * u, "random_direction": s * randoms}``.
    layer : int or Placement
        0..n_blocks (0 = embeddings, i = output of block i); a ``Placement`` also names where the
        blocks and the final norm are.
    alphas : sequence of float
        Strengths. ``0`` is decoded once per prompt (no edit) and its row repeated for every
        arm and draw.
    positions : {"all", "prompt", "generated"}
        Which positions are edited (module docstring).
    max_new_tokens : int
        Generated tokens per text at most; a row stops at an end-of-sequence token (kept in
        ``token_ids``, dropped from ``text``).
    sampling : Sampling, optional
        None (default): greedy decoding.
    batch_size : int
        Rows (prompt x arm x draw x alpha) per forward pass; rows with different vectors share a batch.

    Returns
    -------
    DataFrame
        One row per prompt, arm, draw and alpha: ``prompt_index, prompt, mode, layer, positions, arm,
        draw, alpha, text, token_ids`` (list of int), ``logprobs`` (list of float: log p of each
        generated token under the steered model), ``n_tokens``, ``finished`` (stopped at EOS).
    """
    prompts = [check_str(p, "prompt") for p in ([prompts] if isinstance(prompts, str) else list(prompts))]
    if not prompts:
        raise ValueError("prompts is empty; pass e.g. NEUTRAL_PROMPTS")
    place = layer if isinstance(layer, Placement) else Placement(layer)
    info = layer_info(model, place.blocks_path, place.final_norm)
    hidden, n_blocks = info["hidden_size"], info["n_blocks"]
    layer = check_int(place.layer, "layer", min_val=0, max_val=n_blocks)
    place = Placement(layer, place.blocks_path, place.final_norm)
    vectors, alphas = _steering_vectors(directions, hidden), _check_alphas(alphas)
    check_choice(positions, "positions", GENERATION_POSITIONS)
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", min_val=1)
    batch_size = check_int(batch_size, "batch_size", min_val=1)
    if sampling is not None and not isinstance(sampling, Sampling):
        raise TypeError(f"sampling must be None (greedy) or a Sampling; got {type(sampling).__name__}")
    encoded = [prompt_token_ids(tokenizer, p) for p in prompts]
    rows = sorted(_rows(len(prompts), vectors, alphas), key=lambda r: -len(encoded[r[0]][0]))
    found = _generate_rows(model, tokenizer, [encoded[p][0] for p in range(len(prompts))], rows, vectors, place,
                           (positions, max_new_tokens, sampling, batch_size))
    records, stop = [], _stop_ids(model, tokenizer)
    for (p, v, alpha), (tokens, logps, finished) in zip(rows, found):
        text = tokenizer.decode([t for t in tokens if t not in stop], skip_special_tokens=True)
        for arm, draw, _ in (vectors if v is None else [vectors[v]]):
            records.append((p, prompts[p], encoded[p][1], layer, positions, arm, draw, alpha, text, tokens, logps,
                            len(tokens), finished))
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    arm_order = {arm: i for i, arm in enumerate(dict.fromkeys(a for a, _, _ in vectors))}
    frame["_arm"] = frame["arm"].map(arm_order)
    return frame.sort_values(["prompt_index", "_arm", "draw", "alpha"], kind="stable").drop(columns="_arm") \
        .reset_index(drop=True)


def _generate_rows(model, tokenizer, ids: list[list[int]], rows: list, vectors: list, place: Placement,
                   options: tuple) -> list[tuple[list, list, bool]]:
    """Decode ``rows`` in batches of ``batch_size`` under one hook; results in ``rows`` order."""
    positions, max_new_tokens, sampling, batch_size = options
    stop, pad_id = _stop_ids(model, tokenizer), pad_token_id(tokenizer)
    hidden = len(vectors[0][2])
    edit, out = _Edit(), []
    batches = [rows[k : k + batch_size] for k in range(0, len(rows), batch_size)]
    hook = edit_layer(model, place.layer, edit, positions="all", blocks_path=place.blocks_path,
                      final_norm=place.final_norm)
    with torch.inference_mode(), hook:
        for batch in tqdm(batches, desc="steered generation", disable=len(batches) < 2, leave=False):
            # alpha * vector exactly as add_vector computes it (float32)
            edit.delta = torch.stack([torch.zeros(hidden) if v is None else alpha * torch.from_numpy(vectors[v][2])
                                      for _, v, alpha in batch])
            steered = torch.tensor([v is not None for _, v, _ in batch])
            rngs = [] if sampling is None else [
                derive_rng(sampling.seed, p, "base" if v is None else f"{vectors[v][0]}:{vectors[v][1]}", repr(alpha))
                for p, v, alpha in batch]
            tokens, logps, done = _decode(model, [ids[p] for p, _, _ in batch], edit, steered, positions,
                                          max_new_tokens, stop, pad_id, sampling, rngs)
            out += list(zip(tokens, logps, done))
    return out
