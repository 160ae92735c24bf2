"""Score texts and conversations on a direction: per text, per token or per turn, with calibrated percentiles.

``project_texts`` reads the hidden state at one layer exactly as extraction reads it (same
prompt formatting, batches sorted by length, either padding side, positions from the mask,
the forward pass stopped after the layer: :mod:`personas.model.extraction`) and projects
every token onto the direction's unit vector::

    score = h · v / |v|          (h: the hidden state at ``layer``, float64)

so ``aggregate="last"`` on a stored statement reproduces the stored activation projected on the
same vector. Aggregates:

- ``"last"``: the last token of the prompt (extraction's ``position="last"``; with the
  generation prompt appended, the end of the assistant header);
- ``"mean"``: the mean over the tokens of the span (a plain text's own characters, the last
  message's content for a conversation: extraction's ``position="mean"``);
- ``"tokens"``: one row per token of the prompt, template tokens included;
- ``"turns"``: one row per message, the mean over the tokens of its content.

A token belongs to a span when its character offsets overlap it (zero-width special tokens
never do); spans come from :mod:`personas.model.turns`, never from re-encoding a prompt.

With ``reference=`` (a persona's stored activations and statements table, as
``personas.store.read.load_layers`` returns them) each score also gets its percentile among the
projections of the persona's stored ``+`` and of its ``-`` statements: ``percentile_negative =
97`` reads "beyond 97 % of the persona's - statements". They compare like with like when the
texts are read as the store was (``aggregate`` = the store's position, the same template).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from personas._core.checks import check_bool, check_choice
from personas.model.batching import longest_first, model_inputs, pad_batch, pad_token_id
from personas.model.directions import Direction, check_direction_fits, direction_settings
from personas.model.extraction import ExtractionSettings
from personas.model.hooks import capture_layers, layer_info, resolve_layers
from personas.model.turns import RenderedText, is_conversation, render_conversations, render_texts

__all__ = ["AGGREGATES", "project_texts", "reference_projections", "percentiles"]

AGGREGATES = ("last", "mean", "tokens", "turns")


def _unit(direction, hidden: int) -> np.ndarray:
    vec = direction.vector if isinstance(direction, Direction) else np.asarray(direction)
    if vec.ndim != 1 or vec.shape[0] != hidden or not np.issubdtype(vec.dtype, np.number):
        raise ValueError(f"direction must be a numeric vector of shape ({hidden},) (the model's hidden size); "
                         f"got shape {vec.shape}")
    vec = vec.astype(np.float64)
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("direction must be finite and non-zero")
    return vec / norm


def reference_projections(reference, layer: int, unit: np.ndarray, persona: str | None = None) -> dict[str, np.ndarray]:
    """Projections of a persona's stored ``+`` and ``-`` statements on ``unit``.

    Parameters
    ----------
    reference : (activations, meta)
        ``load_layers(store_dir, model_name, persona, [layer])``: ``{layer: (n, hidden)}`` (or the
        ``(n, hidden)`` array itself) and the row-aligned statements table.
    layer : int
    unit : ndarray (hidden,)
        Unit vector.
    persona : str, optional
        Keep this persona's rows (needed when ``meta`` holds several).

    Returns
    -------
    dict
        ``{"positive": (n_pos,), "negative": (n_neg,)}`` float64 projections.
    """
    try:
        activations, meta = reference
    except (TypeError, ValueError):
        raise ValueError("reference must be (activations, meta), as load_layers returns them") from None
    if isinstance(activations, dict):
        if layer not in activations:
            raise ValueError(f"reference holds layers {sorted(activations)}, not layer {layer}; "
                             f"load_layers(store_dir, model_name, persona, [{layer}])")
        activations = activations[layer]
    X = np.asarray(activations)
    if X.ndim != 2 or X.shape[1] != unit.shape[0] or len(meta) != X.shape[0]:
        raise ValueError(f"reference activations {X.shape} do not fit its table ({len(meta)} rows) "
                         f"and the direction ({unit.shape[0]} values)")
    rows = np.ones(len(meta), dtype=bool)
    personas = list(dict.fromkeys(meta["persona"])) if "persona" in meta else []
    if persona is not None and personas and persona not in personas:
        raise ValueError(f"the direction is persona {persona!r}'s, the reference holds {personas}; "
                         f"load_layers(store_dir, model_name, {persona!r}, [{layer}])")
    if persona is not None and persona in personas:
        rows = (meta["persona"] == persona).to_numpy()
    elif len(personas) > 1:
        raise ValueError(f"reference holds personas {personas}; pass one persona's activations "
                         "(load_layers(store_dir, model_name, persona, [layer]))")
    proj = X[rows].astype(np.float64) @ unit
    direction = meta["direction"].to_numpy()[rows]
    out = {d: proj[direction == d] for d in ("positive", "negative")}
    if not len(out["positive"]) or not len(out["negative"]):
        raise ValueError("reference needs both + and - statements")
    return out


def percentiles(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Percent of ``reference`` below each score (ties count half), in ``[0, 100]``."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    scores = np.asarray(scores, dtype=np.float64)
    below = np.searchsorted(ref, scores, side="left")
    upto = np.searchsorted(ref, scores, side="right")
    out = 100.0 * (below + 0.5 * (upto - below)) / len(ref)
    return np.where(np.isnan(scores), np.nan, out)


def _render(tokenizer, texts, settings: ExtractionSettings, add_generation_prompt: bool) -> list[RenderedText]:
    if isinstance(texts, pd.DataFrame):
        if "statement" not in texts:
            raise ValueError("a DataFrame of texts needs a 'statement' column (a statements table)")
        texts = texts["statement"].tolist()
    elif isinstance(texts, (pd.Series, np.ndarray)):
        texts = texts.tolist()
    if isinstance(texts, (str, dict)) or not isinstance(texts, Sequence) or not len(texts):
        raise ValueError("texts must be a non-empty list of strings, or of conversations (lists of "
                         "{'role', 'content'} dicts)")
    kinds = {is_conversation(t) for t in texts}
    if kinds == {True}:
        return render_conversations(tokenizer, texts, add_generation_prompt=add_generation_prompt)
    if kinds == {False} and all(isinstance(t, str) for t in texts):
        return render_texts(tokenizer, texts, template=settings.template, wrap=settings.wrap)
    raise ValueError("texts must be all strings or all conversations (lists of {'role', 'content'} dicts), not a mix")


def _tokenize(tokenizer, rendered: list[RenderedText]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    ids, offsets = [], []
    for special in dict.fromkeys(r.add_special_tokens for r in rendered):
        idx = [i for i, r in enumerate(rendered) if r.add_special_tokens == special]
        try:
            enc = tokenizer([rendered[i].text for i in idx], add_special_tokens=special, padding=False,
                            truncation=False, return_offsets_mapping=True)
        except (NotImplementedError, TypeError, ValueError) as exc:
            raise ValueError(f"scoring texts needs a fast tokenizer with offset mappings; {type(tokenizer).__name__} "
                             f"has none ({exc})") from exc
        for k, i in enumerate(idx):
            ids.append((i, list(enc["input_ids"][k])))
            offsets.append((i, [tuple(map(int, o)) for o in enc["offset_mapping"][k]]))
    return [x for _, x in sorted(ids)], [x for _, x in sorted(offsets)]


def _context_check(model, ids: list[list[int]]) -> None:
    config = getattr(model, "config", None)
    limit = next((v for k in ("max_position_embeddings", "n_positions", "n_ctx")
                  if isinstance(v := getattr(config, k, None), int) and not isinstance(v, bool) and v > 0), None)
    long = [i for i, x in enumerate(ids) if limit is not None and len(x) > limit]
    if long:
        raise ValueError(f"text {long[0]} is {len(ids[long[0]])} tokens as a prompt, longer than the model's context "
                         f"of {limit} tokens ({len(long)} text(s) too long); shorten it")


def token_projections(model, ids: list[list[int]], unit: np.ndarray, layer: int, settings: ExtractionSettings,
                      *, pad_id: int, side: str, progress: bool = True) -> list[np.ndarray]:
    """``h · unit`` at ``layer`` for every token of every prompt (float64), batched as extraction batches.

    Returns
    -------
    list of ndarray
        One ``(n_tokens,)`` array per prompt, in input order.
    """
    from tqdm.auto import tqdm

    where = layer_info(model, settings.blocks_path, settings.final_norm)
    (layer,) = resolve_layers([layer], where["n_blocks"])
    device = model.get_input_embeddings().weight.device
    v = torch.as_tensor(unit, dtype=torch.float64)
    out: list[np.ndarray] = [np.empty(0)] * len(ids)

    def project(h: torch.Tensor) -> torch.Tensor:  # (batch, seq, hidden) -> (batch, seq), on the CPU in float64
        return h.detach().float().to("cpu", torch.float64) @ v

    with torch.inference_mode(), capture_layers(model, [layer], reduce=project, blocks_path=where["blocks_path"],
                                                final_norm=where["final_norm"]) as cap:
        for rows in tqdm(longest_first(ids, settings.batch_size), desc="project", unit="batch", disable=not progress):
            input_ids, mask, first = pad_batch([ids[i] for i in rows], pad_id, side)
            got = cap.run(**model_inputs(model, input_ids, mask, device))[layer].numpy()
            for r, i in enumerate(rows):
                out[i] = got[r, int(first[r]): int(first[r]) + len(ids[i])].copy()
    return out


def _pieces(text: str, offsets: list[tuple[int, int]], tokens: list[str]) -> list[str]:
    """Readable text of each token: the characters it adds to the rendered text.

    A byte-level token that completes a character another token began adds none (``""``); a
    zero-width token (BOS and other special tokens outside the text) shows its own name.
    """
    out, covered = [], 0
    for (a, b), tok in zip(offsets, tokens):
        if b <= a:
            out.append(tok)
            continue
        out.append(text[max(a, covered):b])
        covered = max(covered, b)
    return out


def _overlaps(offsets: list[tuple[int, int]], start: int, end: int) -> np.ndarray:
    return np.array([b > a and a < end and b > start for a, b in offsets], dtype=bool)


def _token_table(tokenizer, rendered: list[RenderedText], ids, offsets, scores) -> pd.DataFrame:
    frames = []
    for i, (r, x, off, s) in enumerate(zip(rendered, ids, offsets, scores)):
        turn = np.full(len(x), -1)
        for k, t in enumerate(r.turns):
            turn[(turn < 0) & _overlaps(off, t.start, t.end)] = k
        roles = np.array([r.turns[k].role if k >= 0 else "" for k in turn], dtype=object)
        tokens = tokenizer.convert_ids_to_tokens(x)
        frames.append(pd.DataFrame({
            "text": i, "token": np.arange(len(x)), "token_id": x, "token_str": tokens,
            "piece": _pieces(r.text, off, tokens), "start": [a for a, _ in off], "end": [b for _, b in off],
            "turn": turn, "role": roles, "in_span": _overlaps(off, *r.span), "score": s,
        }))
    return pd.concat(frames, ignore_index=True)


def _aggregate(tokens: pd.DataFrame, rendered: list[RenderedText], aggregate: str) -> pd.DataFrame:
    if aggregate == "tokens":
        return tokens
    groups = tokens.groupby("text", sort=True)
    if aggregate == "last":
        last = groups.tail(1)
        return pd.DataFrame({"text": last["text"].to_numpy(), "token": last["token"].to_numpy(),
                             "score": last["score"].to_numpy()})
    if aggregate == "mean":
        rows = []
        for i, g in groups:
            span = g[g["in_span"]]
            if span.empty:
                raise ValueError(f"no token of text {i} overlaps its span (an empty last message?); use aggregate='last'")
            rows.append({"text": i, "n_tokens": len(span), "score": float(span["score"].mean())})
        return pd.DataFrame(rows)
    rows = []
    for i, g in groups:
        for k, t in enumerate(rendered[i].turns):
            part = g[g["turn"] == k]
            rows.append({"text": i, "turn": k, "role": t.role, "start": t.start, "end": t.end, "n_tokens": len(part),
                         "score": float(part["score"].mean()) if len(part) else np.nan})
    return pd.DataFrame(rows)


def _resolve(model, direction, layer, settings) -> tuple[int, ExtractionSettings]:
    """The layer and settings to read with; a Direction is checked against the model."""
    if isinstance(direction, Direction):
        check_direction_fits(direction, model)
        if layer is not None and layer != direction.layer:
            raise ValueError(f"the direction was made at layer {direction.layer}, not {layer}; "
                             "omit layer= or pass the direction made at that layer")
        layer = direction.layer
    elif layer is None:
        raise ValueError("layer is required when direction is an array (hidden_states index)")
    settings = direction_settings(direction) if settings is None else settings
    if not isinstance(settings, ExtractionSettings):
        raise TypeError(f"settings must be an ExtractionSettings; got {type(settings).__name__}")
    return layer, settings


def project_texts(
    model,
    tokenizer,
    texts,
    direction,
    layer: int | None = None,
    *,
    aggregate: str = "last",
    settings: ExtractionSettings | None = None,
    reference=None,
    add_generation_prompt: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Score texts or conversations on a direction at one layer (module docstring).

        direction = direction_from_store(store_dir, model_name, "agreeableness", layer=19)
        ref = load_layers(store_dir, model_name, "agreeableness", [19])
        project_texts(model, tokenizer, ["I like people."], direction, reference=ref)

    Parameters
    ----------
    model, tokenizer :
        As for ``extract_activations``; the tokenizer must be fast (offset mappings).
    texts : list of str (or a statements table), or list of conversations
        Plain texts (formatted as extraction formats statements: ``settings.template`` and
        ``settings.wrap``), or conversations, each a list of ``{"role", "content"}`` dicts.
    direction : Direction or array (hidden,)
        Projected on as a unit vector. A ``Direction`` is checked against the model (hidden size,
        model fingerprint) and gives ``layer`` and the default template.
    layer : int, optional
        ``hidden_states`` index (0 = embeddings, i = output of block i); default: the Direction's.
    aggregate : {"last", "mean", "tokens", "turns"}
    settings : ExtractionSettings, optional
        Template, wrap, batch size and architecture overrides (``position`` is not used:
        ``aggregate`` says what is read). Default: the Direction's template and wrap (those of
        the statements it was made from), else ``ExtractionSettings()``.
    reference : (activations, meta), optional
        A persona's stored activations at ``layer`` and its statements table (``load_layers``):
        adds ``percentile_positive`` and ``percentile_negative``.
    add_generation_prompt : bool
        Conversations only: append the assistant header.
    progress : bool

    Returns
    -------
    DataFrame
        ``"last"``: ``text, token, score``; ``"mean"``: ``text, n_tokens, score``;
        ``"tokens"``: ``text, token, token_id, token_str, piece, start, end, turn, role,
        in_span, score`` (``piece``: the readable text a token adds; ``turn`` -1 for template
        tokens); ``"turns"``: ``text, turn, role, start, end, n_tokens, score``; plus the two
        percentile columns with ``reference``. ``text`` is the input's index; ``attrs`` holds
        ``layer`` and ``aggregate``.
    """
    check_choice(aggregate, "aggregate", AGGREGATES)
    check_bool(add_generation_prompt, "add_generation_prompt")
    check_bool(progress, "progress")
    layer, settings = _resolve(model, direction, layer, settings)
    unit = _unit(direction, layer_info(model, settings.blocks_path, settings.final_norm)["hidden_size"])
    rendered = _render(tokenizer, texts, settings, add_generation_prompt)
    ids, offsets = _tokenize(tokenizer, rendered)
    _context_check(model, ids)
    scores = token_projections(model, ids, unit, layer, settings, pad_id=pad_token_id(tokenizer),
                               side=getattr(tokenizer, "padding_side", "right"), progress=progress)
    table = _aggregate(_token_table(tokenizer, rendered, ids, offsets, scores), rendered, aggregate)
    if reference is not None:
        persona = direction.provenance.personas[0] if isinstance(direction, Direction) and len(
            direction.provenance.personas) == 1 else None
        ref = reference_projections(reference, layer, unit, persona)
        for d in ("positive", "negative"):
            table[f"percentile_{d}"] = percentiles(table["score"].to_numpy(), ref[d])
    table.attrs.update(layer=int(layer), aggregate=aggregate)
    return table
