"""A persona direction as an object: the vector, where it lives in the model, and how it was made.

``Direction`` is the in-memory form that :mod:`personas.model.direction_files` saves and loads
(safetensors, llama.cpp GGUF control vectors) and that :func:`personas.model.projection.project_texts`
scores texts on. ``direction_from_store`` makes one from the activation store with the
definition the causal check uses (``personas.causal.arms.persona_geometry``): the mean of a
persona's ``+`` statements minus the mean of its ``-`` statements at one layer.

The vector is kept as made (not normalised): its norm is ``|mean(+) - mean(-)|``, so adding it
once moves a hidden state by the distance between the two means. Scoring uses its unit vector.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from personas._core.checks import check_choice, check_int
from personas._core.provenance import now_iso

__all__ = ["OPERATIONS", "Provenance", "Direction", "direction_from_store", "check_direction_fits",
           "direction_settings"]

#: What a direction file says to do with the vector: add it to the hidden state (llama.cpp's
#: control vectors and repeng add). Projection-ablation files are refused, not reinterpreted.
OPERATIONS = ("add",)
#: How ``Direction.layer`` counts (the project's convention, ``personas.model.hooks``).
LAYER_CONVENTION = "hidden_states index: 0 = embeddings, i = output of block i (1-based)"


def _opt_str(value, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None; got {value!r}")
    return value


def _opt_int(value, name: str) -> int | None:
    return None if value is None else check_int(value, name, min_val=0)


@dataclass(frozen=True)
class Provenance:
    """How a direction was made.

    Attributes
    ----------
    method : str
        ``"mean_difference"`` (``direction_from_store``), ``"gguf"`` (imported from a control
        vector made elsewhere) or ``"user"``.
    personas : tuple of str
        The persona(s) it separates.
    sample_key : str or None
        The statement sample (the study's ``statement_sample_key``, the store folder's name).
    seed : int or None
        The statement-sampling seed, when known.
    n_positive, n_negative : int or None
        Statements averaged on each side.
    position, template_mode, wrap : str or None
        How the statements were read (the store's manifest); ``project_texts`` formats texts
        with the same template and wrap by default.
    store_fingerprint : str or None
        ``personas.store.fingerprints.store_fingerprint`` of the activations used.
    source : str or None
        A file it was imported from (its name).
    created : str or None
        ISO time.
    """

    method: str = "user"
    personas: tuple[str, ...] = ()
    sample_key: str | None = None
    seed: int | None = None
    n_positive: int | None = None
    n_negative: int | None = None
    position: str | None = None
    template_mode: str | None = None
    wrap: str | None = None
    store_fingerprint: str | None = None
    source: str | None = None
    created: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "personas", tuple(self.personas))
        if not all(isinstance(p, str) for p in self.personas):
            raise TypeError(f"personas must be strings; got {self.personas!r}")
        for name in ("method", "sample_key", "position", "template_mode", "wrap", "store_fingerprint", "source",
                     "created"):
            _opt_str(getattr(self, name), name)
        for name in ("seed", "n_positive", "n_negative"):
            _opt_int(getattr(self, name), name)


@dataclass(frozen=True, eq=False)
class Direction:
    """A direction in one layer's hidden states of one model.

    Attributes
    ----------
    vector : ndarray ``(hidden_size,)``, float32 or float64
        Read-only; kept bit for bit through save/load.
    layer : int
        ``hidden_states`` index: 0 = embeddings, i = output of block i (1-based).
    model : str or None
        The model's name (``model_name``).
    model_fingerprint : str or None
        ``personas.store.fingerprints.model_fingerprint`` of the weights; compared on load.
    model_type : str or None
        ``config.model_type`` (``"llama"``...): the GGUF ``controlvector.model_hint``.
    n_blocks : int or None
        The model's number of blocks (GGUF export needs it: see ``direction_files``).
    scale : float or None
        Mean norm of the hidden states it was made from (the causal check steers by
        ``alpha * scale * unit``).
    operation : {"add"}
    provenance : Provenance
    """

    vector: np.ndarray
    layer: int
    model: str | None = None
    model_fingerprint: str | None = None
    model_type: str | None = None
    n_blocks: int | None = None
    scale: float | None = None
    operation: str = "add"
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        vec = np.asarray(self.vector)
        if vec.dtype not in (np.float32, np.float64) or vec.ndim != 1 or vec.size == 0:
            raise ValueError(f"vector must be a 1-D float32 or float64 array; got {vec.dtype} of shape {vec.shape}")
        if not np.isfinite(vec).all():
            raise ValueError("vector holds non-finite values")
        vec = vec.copy()
        vec.flags.writeable = False
        object.__setattr__(self, "vector", vec)
        object.__setattr__(self, "layer", check_int(self.layer, "layer", min_val=0))
        object.__setattr__(self, "n_blocks", None if self.n_blocks is None else check_int(self.n_blocks, "n_blocks",
                                                                                           min_val=1))
        if self.n_blocks is not None and self.layer > self.n_blocks:
            raise ValueError(f"layer {self.layer} is beyond the model's {self.n_blocks} blocks")
        for name in ("model", "model_fingerprint", "model_type"):
            _opt_str(getattr(self, name), name)
        if self.scale is not None:
            object.__setattr__(self, "scale", float(self.scale))
        check_choice(self.operation, "operation", OPERATIONS)
        if not isinstance(self.provenance, Provenance):
            raise TypeError(f"provenance must be a Provenance; got {type(self.provenance).__name__}")

    @property
    def hidden_size(self) -> int:
        """Length of the vector."""
        return int(self.vector.shape[0])

    @property
    def norm(self) -> float:
        """``|vector|`` (float64)."""
        return float(np.linalg.norm(self.vector.astype(np.float64)))

    @property
    def unit(self) -> np.ndarray:
        """``vector / |vector|`` (float64)."""
        return self.vector.astype(np.float64) / self.norm


def direction_from_store(store_dir: str | os.PathLike, model_name: str, persona: str, layer: int, *,
                         seed: int | None = None, sample_key: str | None = None) -> Direction:
    """The persona direction ``mean(+) - mean(-)`` of a persona's stored statements at ``layer``.

    The causal check's definition (``persona_geometry``), on every stored statement of the persona.

    Parameters
    ----------
    store_dir : path
        The activation store (``extract_to_store``).
    model_name, persona : str
    layer : int
        A stored layer.
    seed : int, optional
        The statement-sampling seed, recorded.
    sample_key : str, optional
        The statement sample; default: the store folder's name when it is a study's
        ``sample-<hex>`` folder.

    Returns
    -------
    Direction
        float64 vector; ``scale`` the mean norm of the statements' hidden states.
    """
    from personas.store.fingerprints import store_fingerprint
    from personas.store.read import load_activations

    acts, manifest = load_activations(store_dir, model_name, persona, [layer])
    a = acts[layer].astype(np.float64)
    pos = np.asarray(manifest["directions"]) == "positive"
    if pos.all() or not pos.any():
        raise ValueError(f"persona {persona!r} needs both + and - statements in the store to make a direction")
    diff = a[pos].mean(0) - a[~pos].mean(0)
    if not np.linalg.norm(diff) > 0:
        raise ValueError(f"persona {persona!r}: mean(+) equals mean(-) at layer {layer}; no direction")
    if sample_key is None and Path(store_dir).name.startswith("sample-"):
        sample_key = Path(store_dir).name
    provenance = Provenance(
        method="mean_difference", personas=(persona,), sample_key=sample_key, seed=seed,
        n_positive=int(pos.sum()), n_negative=int((~pos).sum()), position=manifest.get("position"),
        template_mode=manifest.get("template_mode"), wrap=manifest.get("wrap"),
        store_fingerprint=store_fingerprint(store_dir, model_name, [persona], [layer]), created=now_iso(),
    )
    return Direction(vector=diff, layer=int(layer), model=manifest.get("model"),
                     model_fingerprint=manifest.get("model_fingerprint"), model_type=manifest.get("model_type"),
                     n_blocks=manifest.get("n_blocks"), scale=float(np.linalg.norm(a, axis=1).mean()),
                     provenance=provenance)


def check_direction_fits(direction: Direction, model, *, blocks_path: str | None = None,
                         final_norm: str | None = "auto") -> None:
    """Refuse a direction made for another model: hidden size, weights fingerprint, architecture, depth.

    ``blocks_path`` and ``final_norm`` locate the blocks where the model needs it
    (``ExtractionSettings``' overrides, :func:`personas.model.hooks.layer_info`).

    Raises
    ------
    ValueError
        Naming what differs; load the file without ``model=`` to inspect it anyway.
    """
    from personas.model.hooks import layer_info
    from personas.store.fingerprints import model_fingerprint

    where = layer_info(model, blocks_path, final_norm)
    fix = "use the model it was made for, or make the direction again on this model"
    if direction.hidden_size != where["hidden_size"]:
        raise ValueError(f"the direction has {direction.hidden_size} values, this model's hidden size is "
                         f"{where['hidden_size']}; {fix}")
    if direction.layer > where["n_blocks"]:
        raise ValueError(f"the direction is at layer {direction.layer}, this model has {where['n_blocks']} blocks; {fix}")
    if direction.model_fingerprint is not None:
        mine = model_fingerprint(model)
        if mine != direction.model_fingerprint:
            raise ValueError(f"the direction was made on model {direction.model!r} with fingerprint "
                             f"{direction.model_fingerprint!r}; this model's is {mine!r}; {fix}")
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if direction.model_type is not None and model_type is not None and direction.model_type != model_type:
        raise ValueError(f"the direction is for a {direction.model_type!r} model, this one is {model_type!r}; {fix}")


def direction_settings(direction):
    """``ExtractionSettings`` with the template and wrap a Direction's statements were read with (else defaults)."""
    from personas.model.extraction import ExtractionSettings

    prov = direction.provenance if isinstance(direction, Direction) else Provenance()
    template = prov.template_mode if prov.template_mode in ("system", "user", "raw") else "auto"
    return ExtractionSettings(template=template, wrap=prov.wrap or "{statement}")
