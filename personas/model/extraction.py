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

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from personas._core.checks import check_bool, check_choice, check_int, check_meta, check_settings, check_str
from personas._core.io import clean_temp_files, exclusive_lock
from personas.model.batching import longest_first, model_inputs, pad_batch, pad_token_id, tokenize_prompts
from personas.model.hooks import capture_layers, layer_info, resolve_layers
from personas.model.loading import model_info
from personas.model.prompts import TEMPLATE_MODES, Prompts, format_prompts
from personas.statements import statement_texts
from personas.store.fingerprints import model_fingerprint
from personas.store.paths import LOCK_NAME, META_COLUMNS, StoreError, store_path
from personas.store.read import read_tensors, store_manifest
from personas.store.write import manifest_differences, save_persona

__all__ = ["READ_POSITIONS", "ExtractionSettings", "extract_activations", "extract_to_store"]

#: The token (or tokens) whose hidden state is read: see the module docstring.
READ_POSITIONS = ("last", "last_statement_token", "mean")


@dataclass(frozen=True)
class ExtractionSettings:
    """How activations are read from the model, checked once.

    Attributes
    ----------
    position : {"last", "last_statement_token", "mean"}
        Token position read (``READ_POSITIONS``, module docstring); paper: ``"last"``.
    template : {"auto", "system", "user", "raw"}
        Prompt format (``personas.model.prompts.format_prompts``); paper: system message.
    wrap : str
        Format string applied to each statement first (default: the statement itself).
    batch_size : int
        Statements per forward pass.
    blocks_path, final_norm : str or None
        Overrides for unusual architectures (``personas.model.hooks``).
    too_long : {"error", "truncate"}
        A prompt longer than the model's context (``max_position_embeddings``): an error naming
        the statement and the limit, or cut the statement's last tokens to fit, with a warning
        and a record in ``info["truncated"]``.
    """

    position: str = "last"
    template: str = "auto"
    wrap: str = "{statement}"
    batch_size: int = 16
    blocks_path: str | None = None
    final_norm: str | None = "auto"
    too_long: str = "error"

    def __post_init__(self) -> None:
        check_choice(self.position, "position", READ_POSITIONS)
        check_choice(self.template, "template", TEMPLATE_MODES)
        check_str(self.wrap, "wrap")
        check_int(self.batch_size, "batch_size", min_val=1)
        if self.blocks_path is not None:
            check_str(self.blocks_path, "blocks_path")
        check_choice(self.too_long, "too_long", ("error", "truncate"))


def _context_limit(model) -> int | None:
    """The longest input the model's position embeddings allow, from its config (None if unknown)."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _fit_context(ids, token_sets, limit: int, too_long: str, statements, tokenizer, prompts: Prompts) -> list[dict]:
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
    settings: ExtractionSettings | None = None,
    *,
    progress: bool = True,
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
    layers : "all", "default" or list of int
        0 = embeddings, i = output of block i (as ``hidden_states``), up to ``n_blocks``.
    settings : ExtractionSettings, optional
        Position, template, wrap, batch size, architecture overrides, too-long rule (default:
        the paper's: last token, system template).
    progress : bool
        Show a progress bar over batches.

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

    settings = check_settings(settings, ExtractionSettings, "settings")
    check_bool(progress, "progress")
    statements = statement_texts(statements)
    where = layer_info(model, settings.blocks_path, settings.final_norm)
    layers = resolve_layers(layers, where["n_blocks"])
    prompts = format_prompts(tokenizer, statements, template=settings.template, wrap=settings.wrap)
    ids, token_sets = tokenize_prompts(tokenizer, prompts, need_spans=(settings.position != "last"))
    limit = _context_limit(model)
    truncated = [] if limit is None else _fit_context(ids, token_sets, limit, settings.too_long, statements,
                                                            tokenizer, prompts)
    pad_id, side = pad_token_id(tokenizer), getattr(tokenizer, "padding_side", "right")
    device = model.get_input_embeddings().weight.device
    out = {layer: np.empty((len(ids), where["hidden_size"]), dtype=np.float32) for layer in layers}
    with torch.inference_mode(), capture_layers(
        model, layers, blocks_path=where["blocks_path"], final_norm=where["final_norm"]
    ) as cap:
        for rows in tqdm(longest_first(ids, settings.batch_size), desc="extract", unit="batch", disable=not progress):
            input_ids, mask, first = pad_batch([ids[i] for i in rows], pad_id, side)
            sets = None if token_sets is None else [token_sets[i] for i in rows]
            cap.reduce = _reducer(settings.position, mask, first, sets, device)
            # explicit positions from the mask make left padding equal right padding
            got = cap.run(**model_inputs(model, input_ids, mask, device))
            for layer in layers:
                out[layer][rows] = got[layer].cpu().numpy()
    info = model_info(model)
    info.update(
        n_blocks=where["n_blocks"], hidden_size=where["hidden_size"], layers=layers,
        layer_convention=where["layer_convention"], position=settings.position, template=settings.template,
        template_mode=prompts.mode, template_fallback=prompts.fallback_reason, wrap=settings.wrap,
        add_special_tokens=prompts.add_special_tokens, padding_side=side, blocks_path=where["blocks_path"],
        final_norm=where["final_norm"], n_statements=len(ids), n_tokens=[len(x) for x in ids],
        context_limit=limit, truncated=truncated, prompt_example=prompts.texts[0],
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
    settings: ExtractionSettings | None = None,
    overwrite: bool = False,
    progress: bool = True,
    sources: dict | None = None,
) -> pd.DataFrame:
    """Extract and store activations persona by persona, reusing matching stores.

        model, tokenizer = load_model(model_name)
        stored = extract_to_store(model, tokenizer, load_statements(personas), model_name=model_name,
                                  layers="default", store_dir="output/activations")
        activations, meta = load_layers("output/activations", model_name, personas)

    Parameters
    ----------
    model, tokenizer :
        As for :func:`extract_activations`.
    statements : DataFrame
        Columns ``id, persona, direction, statement`` (``load_statements`` output).
    model_name : str
        Name recorded in the manifests and used for the directory (``model_slug``).
    layers : "all", "default" or list of int
    store_dir : path
    settings : ExtractionSettings, optional
        See :func:`extract_activations`; a stored persona is reused only when made the same way.
    overwrite, progress : bool
        Replace stored personas even if they match; progress bars (per persona).
    sources : dict, optional
        The user's files and their SHA-256 (``study_inputs(...).files``), in each manifest written.

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
    Reuse is verified on data: model fingerprint, statements, and the tensor file against its
    manifest (header, size, write id, per-tensor SHA-256). The writer holds the model folder's
    lock and first removes a crashed writer's temporary files.
    """
    check_meta(statements, len(statements), META_COLUMNS)
    if statements["id"].duplicated().any():
        raise ValueError("statement ids must be unique")
    settings = check_settings(settings, ExtractionSettings, "settings")
    overwrite = check_bool(overwrite, "overwrite")
    check_bool(progress, "progress")
    where = layer_info(model, settings.blocks_path, settings.final_norm)
    layers = resolve_layers(layers, where["n_blocks"])
    model_dir = store_path(store_dir, model_name, "x")[0].parent
    with exclusive_lock(model_dir / LOCK_NAME, f"the activation store {model_dir}"):
        clean_temp_files(model_dir)  # left by a writer that crashed; nobody else writes here now
        about = model_info(model)
        about["model_fingerprint"] = model_fingerprint(model, cache_file=Path(store_dir) / ".model-fingerprints.json")
        about.update(model=model_name, n_blocks=where["n_blocks"], hidden_size=where["hidden_size"],
                     position=settings.position, wrap=settings.wrap, final_norm=where["final_norm"])
        rows = []
        for persona, group in statements.groupby("persona", sort=False):
            group = group.reset_index(drop=True)
            rows.append(_extract_persona(model, tokenizer, group, about, layers, settings, store_dir=store_dir,
                                         overwrite=overwrite, progress=progress, sources=sources))
    return pd.DataFrame(rows, columns=["persona", "status", "n_statements", "layers", "path"])


def _extract_persona(model, tokenizer, group: pd.DataFrame, about: dict, layers: list[int],
                     settings: ExtractionSettings, *, store_dir, overwrite: bool, progress: bool,
                     sources: dict | None = None) -> dict:
    """One persona under the store's lock: reuse, extend or (re)compute its activations."""
    model_name, persona = about["model"], group["persona"].iloc[0]
    tensor_file, manifest_file = store_path(store_dir, model_name, persona)
    todo, status, old = layers, "computed", None
    if manifest_file.exists() and not overwrite:
        manifest = store_manifest(store_dir, model_name, persona)
        mode = format_prompts(tokenizer, group["statement"][:1], template=settings.template, wrap=settings.wrap).mode
        diffs = manifest_differences(manifest, dict(about, template_mode=mode), group)
        if diffs:
            raise ValueError(
                f"the stored activations {manifest_file} were made differently: " + "; ".join(diffs)
                + f". To recompute them: delete the folder {manifest_file.parent}, or give them another store: "
                "`python -m personas.study --output OTHER_DIR` (a study's store is <output>/activations), "
                "store_dir=... in Python, or overwrite=True (extract_to_store)"
            )
        try:
            # the whole file, checked against the manifest: reuse trusts data, not names
            old = read_tensors(tensor_file, manifest, manifest["layers"])
        except StoreError as exc:
            warnings.warn(f"recomputing persona {persona!r}: {exc}", RuntimeWarning, stacklevel=4)
            # redo every layer the file should hold, not only those asked now
            todo, old, status = sorted(set(layers) | set(manifest["layers"])), None, "recomputed"
        else:
            todo = [x for x in layers if x not in manifest["layers"]]
            if not todo:
                return dict(persona=persona, status="reused", n_statements=len(group), layers=manifest["layers"],
                            path=str(tensor_file))
            status = "extended"
    acts, info = extract_activations(model, tokenizer, group["statement"].tolist(), todo, settings, progress=progress)
    if old is not None:
        acts = {**old, **acts}
    save_persona(store_dir, acts, info, group, model_name=model_name, persona=persona,
                 model_fingerprint=about["model_fingerprint"], sources=sources)
    return dict(persona=persona, status=status, n_statements=len(group), layers=sorted(acts), path=str(tensor_file))
