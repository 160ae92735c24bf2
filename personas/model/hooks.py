"""A tiny dependable hook core: capture per-layer hidden states in one forward pass.

Layer convention (the same as Hugging Face ``hidden_states``):

- layer 0 = the embeddings, i.e. the input of block 0 (captured by a pre-hook on
  block 0, so model-specific scaling such as Gemma's ``sqrt(hidden_size)`` or
  Granite's ``embedding_multiplier`` and GPT-2's position embeddings are included);
- layer i (1 <= i < n_blocks) = the output of block i;
- layer n_blocks = what ``hidden_states[n_blocks]`` holds, which for decoders is the
  output of the *final norm* (transformers ties ``hidden_states[-1]`` to
  ``last_hidden_state``), and for encoders without a final norm (BERT) the output of
  the last block. ``find_final_norm`` locates that norm; the capture hooks its output.

``capture_layers`` registers the hooks for a set of layers, stops the forward pass
right after the deepest requested one (nothing after it is computed, no LM head) and
always removes its hooks, even on error.
"""

from __future__ import annotations

import contextlib
import operator
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from personas._core.checks import check_int

__all__ = [
    "LAYER_CONVENTION",
    "ModelFamily",
    "MODEL_FAMILIES",
    "TASK_PREFIXES",
    "model_family",
    "BLOCK_PATHS",
    "FINAL_NORM_NAMES",
    "find_blocks",
    "find_final_norm",
    "layer_info",
    "DEFAULT_LAYERS_RULE",
    "default_layers",
    "resolve_layers",
    "LayerCapture",
    "capture_layers",
]

LAYER_CONVENTION = "0 = embeddings, i = output of block i"

@dataclass(frozen=True)
class ModelFamily:
    """One architecture family, keyed by ``config.model_type`` in ``MODEL_FAMILIES``.

    Attributes
    ----------
    blocks_path : str or None
        Attribute path of the block list in the base model (``AutoModel``); the task models'
        prefixes (``TASK_PREFIXES``) are tried in front of it. None: search ``BLOCK_PATHS``.
    encoder : bool
        A bidirectional encoder: its last token is ``[SEP]``, so extraction reads the mean over the
        statement's tokens by default, and it has no language-model head for the readouts.
    """

    blocks_path: str | None = "layers"
    encoder: bool = False


#: The model-family registry. A new family is one entry here plus a tiny random config in
#: tests/tiny_models.py, which tests/test_extraction.py holds to ``output_hidden_states``
#: (``docs/extending.md``). A family missing here still loads when its blocks sit at one of
#: ``BLOCK_PATHS`` or are the only ModuleList as long as ``config.num_hidden_layers``.
MODEL_FAMILIES: dict[str, ModelFamily] = {
    **{t: ModelFamily("layers") for t in ("llama", "mistral", "mixtral", "gemma", "gemma2", "gemma3", "gemma3_text",
                                          "qwen2", "qwen3", "granite", "phi3", "olmo", "olmo2", "gpt_neox")},
    **{t: ModelFamily("h") for t in ("gpt2", "gptj", "falcon", "bloom")},
    "opt": ModelFamily("decoder.layers"),
    "mpt": ModelFamily("blocks"),
    **{t: ModelFamily("encoder.layer", encoder=True) for t in ("bert", "roberta", "xlm-roberta", "camembert", "mpnet",
                                                                "electra", "deberta", "deberta-v2")},
    "distilbert": ModelFamily("transformer.layer", encoder=True),
    "modernbert": ModelFamily("layers", encoder=True),
    "albert": ModelFamily(None, encoder=True),
}
#: Prefixes of the base model inside the task models (``...ForCausalLM``, multimodal wrappers).
TASK_PREFIXES = ("", "model.", "model.language_model.", "language_model.", "transformer.", "gpt_neox.",
                 "model.decoder.", "bert.", "roberta.", "distilbert.")

# Attribute paths of the block list, tried in order when the family is not registered. Base models
# (AutoModel) first, then the same under the usual task-model prefixes (…ForCausalLM etc.).
BLOCK_PATHS = (
    "layers",  # Llama, Mistral, Gemma/Gemma2/Gemma3 text, Qwen2/3, Granite, Phi-3, GPT-NeoX (base)
    "h",  # GPT-2, GPT-J, Falcon, Bloom (base)
    "encoder.layer",  # BERT, RoBERTa, MiniLM (base)
    "decoder.layers",  # OPT (base)
    "blocks",  # MPT (base)
    "model.layers",
    "model.language_model.layers",
    "language_model.layers",
    "transformer.h",
    "transformer.blocks",
    "gpt_neox.layers",
    "model.decoder.layers",
    "bert.encoder.layer",
    "roberta.encoder.layer",
)
# Names of the norm applied after the last block, looked up beside the block list.
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm", "norm_f")


class _StopForward(Exception):
    """Raised by a hook after the deepest requested layer to end the forward pass."""


def _get_path(model: nn.Module, path: str) -> nn.Module:
    try:
        return operator.attrgetter(path)(model) if path else model
    except AttributeError as exc:
        raise AttributeError(f"{type(model).__name__} has no submodule {path!r}") from exc


def _module_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.ModuleList) and len(mod) > 0]


def model_family(model_or_config) -> ModelFamily | None:
    """The registered family of a model or config (``MODEL_FAMILIES[config.model_type]``), or None."""
    config = getattr(model_or_config, "config", model_or_config)
    return MODEL_FAMILIES.get(getattr(config, "model_type", None))


def _family_paths(model: nn.Module) -> tuple[str, ...]:
    family = model_family(model)
    if family is None or family.blocks_path is None:
        return ()
    return tuple(prefix + family.blocks_path for prefix in TASK_PREFIXES)


def find_blocks(model: nn.Module, blocks_path: str | None = None) -> tuple[str, nn.ModuleList]:
    """The list of transformer blocks of ``model`` and its attribute path.

    Parameters
    ----------
    model : torch.nn.Module
        A Hugging Face model (base model or task model such as ``…ForCausalLM``).
    blocks_path : str, optional
        Manual override: attribute path of the block list, e.g. ``"model.layers"``.

    Returns
    -------
    (str, torch.nn.ModuleList)
        The path and the blocks.

    Raises
    ------
    ValueError
        If no block list is found (the message lists the candidate ModuleLists and
        says to pass ``blocks_path``), or ``blocks_path`` is not a ModuleList.
    """
    if blocks_path is not None:
        mod = _get_path(model, blocks_path)
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            raise ValueError(f"blocks_path {blocks_path!r} is a {type(mod).__name__}, not a non-empty ModuleList")
        return blocks_path, mod
    for path in _family_paths(model) + BLOCK_PATHS:
        try:
            mod = operator.attrgetter(path)(model)
        except AttributeError:
            continue
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            return path, mod
    # generic fallback: the only ModuleList as long as config.num_hidden_layers
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = _module_lists(model)
    same = [(name, mod) for name, mod in candidates if len(mod) == n_layers]
    if len(same) == 1:
        return same[0]
    listing = ", ".join(f"{name!r} ({len(mod)} x {type(mod[0]).__name__})" for name, mod in candidates[:10]) or "none"
    raise ValueError(
        f"could not find the transformer blocks of {type(model).__name__}; candidate ModuleLists: {listing}. "
        "Pass blocks_path='<attribute path>' (e.g. 'model.layers')"
    )


def find_final_norm(
    model: nn.Module, blocks_path: str | None = None, final_norm: str | None = "auto"
) -> tuple[str | None, nn.Module | None]:
    """The norm whose output is ``hidden_states[n_blocks]``, or ``(None, None)``.

    transformers sets ``hidden_states[-1] = last_hidden_state``; decoders apply a
    final norm (``norm``, ``ln_f``, ``final_layer_norm``…) after the last block, so
    their ``hidden_states[n_blocks]`` is the normed output. The norm is looked up
    beside the block list. Models whose config sets ``tie_last_hidden_states=False``
    and encoders without such a norm (BERT) get ``(None, None)``: their last layer is
    the output of the last block.

    Parameters
    ----------
    final_norm : "auto", str or None
        ``"auto"`` to look it up, an attribute path to force one, None for none.
    """
    if final_norm is None:
        return None, None
    if final_norm != "auto":
        return final_norm, _get_path(model, final_norm)
    if getattr(getattr(model, "config", None), "tie_last_hidden_states", True) is False:
        return None, None
    path, _ = find_blocks(model, blocks_path)
    parent_path = path.rpartition(".")[0]
    parent = _get_path(model, parent_path)
    for name in FINAL_NORM_NAMES:
        mod = getattr(parent, name, None)
        if isinstance(mod, nn.Module) and not isinstance(mod, nn.ModuleList):
            return (f"{parent_path}.{name}" if parent_path else name), mod
    return None, None


def layer_info(model: nn.Module, blocks_path: str | None = None, final_norm: str | None = "auto") -> dict:
    """Where the layers of ``model`` live.

    Returns
    -------
    dict
        ``n_blocks`` (int), ``hidden_size`` (int), ``blocks_path`` (str),
        ``block_class`` (str), ``final_norm`` (attribute path or None: the module
        whose output is layer ``n_blocks``), ``layer_convention`` (str).
    """
    path, blocks = find_blocks(model, blocks_path)
    norm_path, _ = find_final_norm(model, path, final_norm)
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if hidden is None:  # rare configs: read it off the input embeddings
        hidden = model.get_input_embeddings().weight.shape[1]
    return {
        "n_blocks": len(blocks),
        "hidden_size": int(hidden),
        "blocks_path": path,
        "block_class": type(blocks[0]).__name__,
        "final_norm": norm_path,
        "layer_convention": LAYER_CONVENTION,
    }


DEFAULT_LAYERS_RULE = (
    "layer 0 (embeddings, the control), then 1, 1 + step, 1 + 2 step, ... up to block n_blocks - 1, "
    "plus n_blocks - 1 if the step misses it (step 3: the paper's 1, 4, ..., 31 for 32 blocks); "
    "layer n_blocks (after the final norm) is left out"
)


def default_layers(n_blocks: int, step: int = 3) -> list[int]:
    """The paper's layer pattern generalised to an ``n_blocks``-block model.

    The paper examines ``hidden_states`` indices 1, 4, 7, ..., 31 of 32-block models:
    every ``step``-th block output from block 1 up to block ``n_blocks - 1``. Layer
    ``n_blocks`` is left out because for decoders it holds the *final norm*'s output,
    on another scale than the block outputs before it. Returned: ``[0] + pattern`` with ``n_blocks - 1``
    appended when the step misses it (see ``DEFAULT_LAYERS_RULE``).

    Examples
    --------
    >>> default_layers(32)
    [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31]
    >>> default_layers(30)
    [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 29]
    """
    n_blocks = check_int(n_blocks, "n_blocks", min_val=1)
    step = check_int(step, "step", min_val=1)
    last = max(n_blocks - 1, 1)
    out = list(range(1, last + 1, step))
    if out[-1] != last:
        out.append(last)
    return [0] + out


def _layer_ints(layers, words: str) -> list[int]:
    """``layers`` (an int or ints) as a sorted list of unique ints; ``True`` or ``2.0`` are not layers."""
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, (bool, np.bool_)):
        layers = [layers]
    try:
        items = list(layers)
        if any(isinstance(x, (bool, np.bool_)) for x in items):
            raise TypeError("bool is not a layer index")
        out = sorted({operator.index(x) for x in items})
    except TypeError as exc:
        raise ValueError(f"layers must be {words}, got {layers!r}") from exc
    return out


def resolve_layers(
    layers,
    n_blocks: int | None = None,
    *,
    available: Mapping[int, Any] | Iterable[int] | None = None,
    add_control: bool = False,
) -> list[int]:
    """The layers asked for, checked: the one layer validator of the project.

    Parameters
    ----------
    layers : "default", "all", None, int or iterable of int
        ``"default"``: :func:`default_layers` (needs ``n_blocks``); ``"all"`` or None: every
        layer (``0..n_blocks``, or every one in ``available``).
    n_blocks : int, optional
        The model's number of blocks: valid layers are ``0..n_blocks``.
    available : mapping or iterable of int, optional
        The layers that exist (e.g. the activations dict ``load_layers`` returns); a layer
        outside it is an error naming the available ones.
    add_control : bool
        Add layer 0 (the embeddings, the wording-only control). With ``available`` it is added
        only when available, with a warning when it is not.

    Returns
    -------
    list of int
        Sorted and unique.
    """
    if available is not None:
        avail = sorted(int(k) for k in (available.keys() if isinstance(available, Mapping) else available))
        if not avail:
            raise ValueError("no layers available: the activations are empty; extract some layers first")
        if layers is None or (isinstance(layers, str) and layers == "all"):
            out = avail
        else:
            out = _layer_ints(layers, "'all' or a list of ints")
            if not out:
                raise ValueError(f"no layers requested; available layers: {avail}")
            missing = [x for x in out if x not in set(avail)]
            if missing:
                raise ValueError(
                    f"layers {missing} are not in the store; available layers: {avail}. "
                    "Extract those layers first or pick from the available ones."
                )
        if add_control and 0 not in avail:
            warnings.warn(
                "layer 0 (embeddings) is not in the activations, so the embedding-layer control is missing; "
                "extract layer 0 too to compare every layer with the wording alone",
                stacklevel=2,
            )
        elif add_control:
            out = sorted({0, *out})
        if n_blocks is not None:
            _check_range(out, n_blocks)
        return out
    if n_blocks is None:
        raise ValueError("resolve_layers needs n_blocks or available")
    if isinstance(layers, str):
        if layers == "default":
            out = default_layers(n_blocks)
        elif layers == "all":
            out = list(range(n_blocks + 1))
        else:
            raise ValueError(f"layers must be 'default', 'all' or a list of ints, got {layers!r}")
    else:
        out = _layer_ints(layers, "'default', 'all' or a list of ints")
        if not out:
            raise ValueError("layers is empty; pass 'all' or a list of ints")
    _check_range(out, n_blocks)
    return sorted({0, *out}) if add_control else out


def _check_range(layers: list[int], n_blocks: int) -> None:
    bad = [x for x in layers if not 0 <= x <= n_blocks]
    if bad:
        raise ValueError(
            f"layers {bad} out of range: this model has {n_blocks} blocks, so valid layers are 0..{n_blocks} "
            f"({LAYER_CONVENTION})"
        )


def _first_tensor(output):
    return output[0] if isinstance(output, (tuple, list)) else output


@dataclass
class LayerCapture:
    """Hooks of ``capture_layers``; ``run`` does one forward pass and returns the layers.

    Attributes
    ----------
    layers : list of int
        Captured layers, sorted.
    reduce : callable or None
        Applied to each captured ``(batch, seq, hidden_size)`` tensor right away
        (e.g. to pick one token), so full sequences are never kept.
    outputs : dict
        ``{layer: tensor}`` of the last ``run``.
    """

    model: nn.Module
    layers: list[int]
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    stop_early: bool = True
    deepest: int = 0

    def _store(self, layer: int, hidden: torch.Tensor) -> None:
        self.outputs[layer] = self.reduce(hidden) if self.reduce is not None else hidden
        if self.stop_early and layer == self.deepest:
            raise _StopForward

    def run(self, *args, **kwargs) -> dict[int, torch.Tensor]:
        """Call the model with these arguments; return ``{layer: tensor}``.

        With ``stop_early`` the forward pass ends after the deepest layer, so the
        model's own return value is not available.
        """
        self.outputs = {}
        try:
            self.model(*args, **kwargs)
        except _StopForward:
            pass
        missing = [x for x in self.layers if x not in self.outputs]
        if missing:
            raise RuntimeError(f"layers {missing} were not captured: the forward pass did not reach them")
        return dict(self.outputs)


@contextlib.contextmanager
def capture_layers(
    model: nn.Module,
    layers: Sequence[int] | str,
    *,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    blocks_path: str | None = None,
    final_norm: str | None = "auto",
    stop_early: bool = True,
) -> Iterator[LayerCapture]:
    """Register hooks capturing ``layers``; yields a ``LayerCapture``; removes them on exit.

    Parameters
    ----------
    model : torch.nn.Module
        Any model ``find_blocks`` understands (base or task model).
    layers : "all" or list of int
        Layer indices, 0..n_blocks (0 = embeddings, i = output of block i).
    reduce : callable, optional
        Applied to each ``(batch, seq, hidden_size)`` hidden state as it is captured.
    blocks_path, final_norm :
        Overrides, see ``find_blocks`` and ``find_final_norm``.
    stop_early : bool
        End the forward pass after the deepest requested layer (default True).

    Examples
    --------
    >>> with capture_layers(model, [0, 4, 8]) as cap:          # doctest: +SKIP
    ...     acts = cap.run(input_ids=ids, attention_mask=mask)  # {0: (b, s, h), 4: ..., 8: ...}
    """
    path, blocks = find_blocks(model, blocks_path)
    n_blocks = len(blocks)
    layers = resolve_layers(layers, n_blocks)
    norm_path, norm = find_final_norm(model, path, final_norm)
    cap = LayerCapture(model=model, layers=layers, reduce=reduce, stop_early=stop_early, deepest=layers[-1])

    handles = []
    try:
        if 0 in layers:

            def embeddings_hook(module, args, kwargs):
                hidden = args[0] if args else kwargs["hidden_states"]
                cap._store(0, hidden)

            handles.append(blocks[0].register_forward_pre_hook(embeddings_hook, with_kwargs=True))
        for layer in layers:
            if layer == 0:
                continue
            if layer == n_blocks and norm is not None:
                module = norm
            else:
                module = blocks[layer - 1]

            def output_hook(module, args, output, layer=layer):
                cap._store(layer, _first_tensor(output))

            handles.append(module.register_forward_hook(output_hook))
        yield cap
    finally:
        for handle in handles:
            handle.remove()
