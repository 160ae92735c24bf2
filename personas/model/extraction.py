"""Batched per-layer activation extraction: all requested layers in one forward pass.

Compared with the published procedure (one statement per forward pass, the whole
model re-run for each layer), each batch of statements goes through the model once,
hooks keep one token (or a mean) per requested layer, and the forward pass stops
after the deepest requested layer. Batches are sorted by token length to waste little
compute on padding; results come back in input order.

Token position (from the attention mask, so left and right padding agree):

- ``"last"`` (paper): the last token of the prompt. With a chat template and the
  generation prompt appended this is the end of the assistant header, not the
  statement (e.g. ``"\\n\\n"`` after ``<|end_header_id|>`` for Llama-3).
- ``"last_statement_token"``: the last token overlapping the statement's characters.
- ``"mean"``: the mean over the tokens overlapping the statement's characters.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from personas._core.checks import check_bool, check_choice, check_int
from personas._core.io import (
    clean_temp_files,
    exclusive_lock,
)
from personas.model.hooks import capture_layers, layer_info, resolve_layers
from personas.model.loading import model_info
from personas.model.prompts import Prompts, format_prompts
from personas.statements import statement_texts
from personas.store.fingerprints import model_fingerprint
from personas.store.paths import _LOCK_NAME, _META_COLUMNS, StoreError, store_path
from personas.store.read import _read_tensors, store_manifest
from personas.store.write import _differences, _save

__all__ = ["POSITIONS", "tokenize_prompts", "extract_activations"]

POSITIONS = ("last", "last_statement_token", "mean")


def _context_limit(model) -> int | None:
    """The longest input the model's position embeddings allow, from its config (None if unknown)."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _fit_context(ids, token_sets, limit: int, too_long: str, statements, tokenizer, prompts) -> list[dict]:
    """Error on prompts longer than ``limit`` tokens, or cut their statements' last tokens.

    Truncation drops the last tokens of the statement itself (the template around it
    stays, so position "last" still reads the end of the prompt). Changes ``ids`` and
    ``token_sets`` in place; returns one record per truncated statement.
    """
    long_ones = [i for i, x in enumerate(ids) if len(x) > limit]
    if not long_ones:
        return []
    if too_long == "error":
        i = long_ones[0]
        text = statements[i] if len(statements[i]) <= 80 else statements[i][:77] + "..."
        raise ValueError(
            f"statement {i} ({text!r}) is {len(ids[i])} tokens as a prompt, longer than the model's context of "
            f"{limit} tokens ({len(long_ones)} statement(s) too long in all); shorten or drop it, "
            "or pass too_long='truncate' to cut such statements to fit"
        )
    spans = token_sets
    if spans is None:
        _, spans = tokenize_prompts(tokenizer, prompts, need_spans=True)
    truncated = []
    for i in long_ones:
        excess = len(ids[i]) - limit
        span = spans[i]
        if len(span) <= excess or span[-1] - span[0] + 1 != len(span):
            raise ValueError(
                f"statement {i} cannot be truncated to fit the model's context of {limit} tokens "
                f"(the prompt around it alone is too long, or its tokens are not contiguous); shorten it"
            )
        cut = span[-excess]  # first dropped token
        ids[i] = ids[i][:cut] + ids[i][span[-1] + 1:]
        if token_sets is not None:
            token_sets[i] = span[:-excess]
        truncated.append({"index": i, "n_tokens": limit + excess, "kept_tokens": limit})
    warnings.warn(
        f"{len(truncated)} statement(s) longer than the model's context of {limit} tokens were truncated "
        f"(indices {[t['index'] for t in truncated][:10]}); see info['truncated']", RuntimeWarning, stacklevel=3,
    )
    return truncated


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


def _check_layer_list(layers) -> list[int]:
    """A list of layer ints; ``True`` or ``2.0`` are not layers."""
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, (bool, np.bool_)):
        return [int(layers)]
    try:
        return [check_int(x, f"layers[{i}]") for i, x in enumerate(list(layers))]
    except TypeError as exc:  # a ValueError, as resolve_layers raises for bad layers
        raise ValueError(f"layers must be 'all' or a list of ints, got {layers!r} ({exc})") from None


def _accepts(model, name: str) -> bool:
    params = inspect.signature(model.forward).parameters
    return name in params


def _pad_batch(ids: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad to a rectangle; return input_ids, attention_mask and each row's first real column."""
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


def _reducer(position: str, mask: torch.Tensor, first: torch.Tensor, token_sets, device):
    """A function (batch, seq, hidden) -> (batch, hidden) float32 picking the position.

    Index tensors follow the hidden state's device (``device_map`` spreads blocks over GPUs).
    """
    batch = torch.arange(mask.shape[0], device=device)
    if position == "mean":
        weights = torch.zeros(mask.shape, dtype=torch.float32)
        for r, s in enumerate(token_sets):
            weights[r, first[r] + torch.tensor(s)] = 1.0 / len(s)
        weights = weights.to(device)
        return lambda h: torch.einsum("bs,bsh->bh", weights.to(h.device), h.float())
    if position == "last":
        # last real column, from the mask: works for left and right padding
        col = mask.shape[1] - 1 - torch.flip(mask, dims=[1]).argmax(dim=1)
    else:  # last_statement_token
        col = first + torch.tensor([s[-1] for s in token_sets])
    col = col.to(device)
    return lambda h: h[batch.to(h.device), col.to(h.device)].float()


def extract_activations(
    model,
    tokenizer,
    statements,
    layers: Sequence[int] | str = "all",
    *,
    position: str = "last",
    template: str = "auto",
    wrap: str = "{statement}",
    batch_size: int = 16,
    progress: bool = True,
    blocks_path: str | None = None,
    final_norm: str | None = "auto",
    too_long: str = "error",
) -> tuple[dict[int, np.ndarray], dict]:
    """Hidden states of ``statements`` at ``layers``, one batched forward pass per batch.

    Parameters
    ----------
    model : transformers model
        Base or task model; its blocks are found by ``personas.model.hooks.find_blocks``.
    tokenizer : transformers tokenizer
        Needs a pad token (``load_model`` sets one); either padding side works.
    statements : sequence of str or DataFrame
        Statements (a DataFrame's ``statement`` column).
    layers : "all" or list of int
        0 = embeddings, i = output of block i (as ``hidden_states``), up to ``n_blocks``.
    position : {"last", "last_statement_token", "mean"}
        Token position kept (see module docstring); paper: ``"last"``.
    template : {"auto", "system", "user", "raw"}
        Prompt format (``personas.model.prompts.format_prompts``); paper: system message.
    wrap : str
        Format string applied to each statement first (default: the statement itself).
    batch_size : int
        Statements per forward pass.
    progress : bool
        Show a progress bar over batches.
    blocks_path, final_norm :
        Overrides for unusual architectures (``personas.model.hooks``).
    too_long : {"error", "truncate"}
        A prompt longer than the model's context (``max_position_embeddings``): an
        error naming the statement and the limit, or cut the statement's last tokens
        to fit, with a warning and a record in ``info["truncated"]``.

    Returns
    -------
    activations : dict of int -> ndarray
        ``{layer: float32 array (n_statements, hidden_size)}``, rows in input order.
    info : dict
        What was done: model, revision, dtype, n_blocks, hidden_size, layers,
        layer_convention, position, template (requested), template_mode (used),
        template_fallback, wrap, add_special_tokens, padding_side, blocks_path,
        final_norm, n_statements, n_tokens (per statement, after any truncation),
        context_limit, truncated (``[{"index", "n_tokens", "kept_tokens"}]``), prompt_example.
    """
    from tqdm.auto import tqdm

    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    try:
        batch_size = check_int(batch_size, "batch_size", min_val=1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r} ({exc})") from None
    check_choice(too_long, "too_long", ("error", "truncate"))
    check_bool(progress, "progress")
    if not isinstance(layers, str):
        layers = _check_layer_list(layers)
    statements = statement_texts(statements)
    where = layer_info(model, blocks_path, final_norm)
    layers = resolve_layers(layers, where["n_blocks"])

    prompts = format_prompts(tokenizer, statements, template=template, wrap=wrap)
    ids, token_sets = tokenize_prompts(tokenizer, prompts, need_spans=(position != "last"))
    limit = _context_limit(model)
    truncated = [] if limit is None else _fit_context(ids, token_sets, limit, too_long, statements, tokenizer, prompts)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:  # any id works: padded positions are masked out
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    side = getattr(tokenizer, "padding_side", "right")
    device = model.get_input_embeddings().weight.device
    # explicit positions from the mask make left padding equal right padding
    pass_positions = _accepts(model, "position_ids")
    extra = {"use_cache": False} if _accepts(model, "use_cache") else {}

    n = len(statements)
    out = {layer: np.empty((n, where["hidden_size"]), dtype=np.float32) for layer in layers}
    # longest first: similar lengths share a batch, and memory trouble shows at once
    order = sorted(range(n), key=lambda i: -len(ids[i]))
    batches = [order[k : k + batch_size] for k in range(0, n, batch_size)]

    with torch.inference_mode(), capture_layers(
        model, layers, blocks_path=where["blocks_path"], final_norm=where["final_norm"]
    ) as cap:
        for rows in tqdm(batches, desc="extract", unit="batch", disable=not progress):
            input_ids, mask, first = _pad_batch([ids[i] for i in rows], pad_id, side)
            sets = None if token_sets is None else [token_sets[i] for i in rows]
            cap.reduce = _reducer(position, mask, first, sets, device)
            inputs = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
            if pass_positions:
                inputs["position_ids"] = (mask.cumsum(dim=1) - 1).clamp(min=0).to(device)
            got = cap.run(**inputs, **extra)
            for layer in layers:
                out[layer][rows] = got[layer].cpu().numpy()

    info = model_info(model)
    info.update(
        n_blocks=where["n_blocks"],
        hidden_size=where["hidden_size"],
        layers=layers,
        layer_convention=where["layer_convention"],
        position=position,
        template=template,
        template_mode=prompts.mode,
        template_fallback=prompts.fallback_reason,
        wrap=wrap,
        add_special_tokens=prompts.add_special_tokens,
        padding_side=side,
        blocks_path=where["blocks_path"],
        final_norm=where["final_norm"],
        n_statements=n,
        n_tokens=[len(x) for x in ids],
        context_limit=limit,
        truncated=truncated,
        prompt_example=prompts.texts[0],
    )
    return out, info


def extract_to_store(
    model,
    tokenizer,
    statements: pd.DataFrame,
    *,
    model_name: str,
    layers: Sequence[int] | str,
    store_dir: str | os.PathLike,
    position: str = "last",
    template: str = "auto",
    wrap: str = "{statement}",
    batch_size: int = 16,
    overwrite: bool = False,
    progress: bool = True,
    blocks_path: str | None = None,
) -> pd.DataFrame:
    """Extract and store activations persona by persona, reusing matching stores.

    Parameters
    ----------
    model, tokenizer :
        As for ``personas.model.extraction.extract_activations``.
    statements : DataFrame
        Columns ``id, persona, direction, statement`` (``load_statements`` output).
    model_name : str
        Name recorded in the manifests and used for the directory (``model_slug``).
    layers : "all" or list of int
        0 = embeddings, i = output of block i.
    store_dir : path
        Root of the store.
    position, template, wrap, batch_size, blocks_path :
        See ``extract_activations``.
    overwrite : bool
        Recompute and replace stored personas even if they match.
    progress : bool
        Progress bar over batches (one bar per persona).

    Returns
    -------
    DataFrame
        One row per persona: ``persona, status`` (``"computed"``, ``"reused"``,
        ``"extended"``: missing layers added, or ``"recomputed"``: the stored tensor
        file was broken, see the warning), ``n_statements, layers, path``.

    Raises
    ------
    ValueError
        A stored persona was made with other settings, statements or model weights
        (the message names the differing fields); pass ``overwrite=True`` or another
        ``store_dir``.
    RuntimeError
        Another process is writing this model's store.

    Notes
    -----
    Reuse is verified on data: the model's fingerprint (:func:`model_fingerprint`) and
    the statements must match, and the tensor file must match its manifest (header,
    size, write id and per-tensor SHA-256; this reads the file). The writer holds an
    exclusive lock on the model's folder and first removes temporary files a crashed
    writer left there.
    """

    missing_cols = [c for c in _META_COLUMNS if c not in statements.columns]
    if missing_cols:
        raise ValueError(f"statements lacks columns {missing_cols}; use load_statements() output")
    if statements["id"].duplicated().any():
        raise ValueError("statement ids must be unique")
    overwrite = check_bool(overwrite, "overwrite")
    check_bool(progress, "progress")
    try:
        check_int(batch_size, "batch_size", min_val=1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r} ({exc})") from None
    layers = _check_layers(layers)
    where = layer_info(model, blocks_path)
    layers = resolve_layers(layers, where["n_blocks"])
    model_dir = store_path(store_dir, model_name, "x")[0].parent
    with exclusive_lock(model_dir / _LOCK_NAME, f"the activation store {model_dir}"):
        clean_temp_files(model_dir)  # left by a writer that crashed; nobody else writes here now
        about = model_info(model)
        about["model_fingerprint"] = model_fingerprint(model, cache_file=Path(store_dir) / ".model-fingerprints.json")
        return _extract_locked(model, tokenizer, statements, about, where, model_name=model_name, layers=layers,
                               store_dir=store_dir, position=position, template=template, wrap=wrap,
                               batch_size=batch_size, overwrite=overwrite, progress=progress, blocks_path=blocks_path)


def _check_layers(layers):
    """``layers`` as ``"all"`` or a list of ints (no bools, floats or strings)."""

    return layers if isinstance(layers, str) else _check_layer_list(layers)


def _extract_locked(model, tokenizer, statements, about, where, *, model_name, layers, store_dir, position, template,
                    wrap, batch_size, overwrite, progress, blocks_path) -> pd.DataFrame:

    rows = []
    for persona, group in statements.groupby("persona", sort=False):
        group = group.reset_index(drop=True)
        tensor_file, manifest_file = store_path(store_dir, model_name, persona)
        todo, status, old = layers, "computed", None
        if manifest_file.exists() and not overwrite:
            manifest = store_manifest(store_dir, model_name, persona)
            wanted = dict(
                about,
                model=model_name,
                n_blocks=where["n_blocks"],
                hidden_size=where["hidden_size"],
                position=position,
                template_mode=format_prompts(tokenizer, group["statement"][:1], template=template, wrap=wrap).mode,
                wrap=wrap,
                final_norm=where["final_norm"],
            )
            diffs = _differences(manifest, wanted, group)
            if diffs:
                raise ValueError(
                    f"the stored activations {manifest_file} were made differently: " + "; ".join(diffs)
                    + ". Pass overwrite=True to recompute them, or use another store_dir"
                )
            try:
                # the whole file, checked against the manifest: reuse trusts data, not names
                old = _read_tensors(tensor_file, manifest, manifest["layers"])
            except StoreError as exc:
                warnings.warn(f"recomputing persona {persona!r}: {exc}", RuntimeWarning, stacklevel=3)
                # redo every layer the file should hold, not only those asked now
                todo, old, status = sorted(set(layers) | set(manifest["layers"])), None, "recomputed"
            else:
                todo = [x for x in layers if x not in manifest["layers"]]
                if not todo:
                    rows.append(dict(persona=persona, status="reused", n_statements=len(group),
                                     layers=manifest["layers"], path=str(tensor_file)))
                    continue
                status = "extended"
        acts, info = extract_activations(
            model, tokenizer, group["statement"].tolist(), todo, position=position, template=template, wrap=wrap,
            batch_size=batch_size, progress=progress, blocks_path=blocks_path,
        )
        if old is not None:
            acts = {**old, **acts}
        _save(store_dir, acts, info, group, model_name=model_name, persona=persona,
              model_fingerprint=about["model_fingerprint"])
        rows.append(dict(persona=persona, status=status, n_statements=len(group), layers=sorted(acts), path=str(tensor_file)))
    return pd.DataFrame(rows, columns=["persona", "status", "n_statements", "layers", "path"])
