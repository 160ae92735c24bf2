"""The causal check's pieces: the persona geometry at a layer, the arms (interventions and
their controls), and the recorder that runs a prepared readout under each arm.

An *arm* is ``(intervention, alpha, draw, context)``: ``context()`` opens the hooks of
:mod:`personas.model.interventions`, and the readout's forward passes run inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from personas.causal.split import random_node_draws, random_unit_directions
from personas.causal.stats import auc_interval, bootstrap_index, effect_summary, is_informative
from personas._core.provenance import derive_rng
from personas.model.extraction import extract_activations
from personas.model.interventions import ablate_nodes, add_vector


@dataclass(frozen=True)
class Geometry:
    """One persona at one layer, from its training statements read as extraction reads them.

    Attributes
    ----------
    unit : ndarray ``(hidden,)``
        Unit ``mean(+) - mean(-)``.
    scale : float
        Mean norm of the training hidden states (a steering vector is ``alpha * scale * unit``).
    mean_neg : ndarray ``(hidden,)``
        Mean of the ``-`` training states (the ablation values).
    variance : ndarray ``(hidden,)``
        Variance of each node over all training statements (the top-variance control).
    norm : float
        ``|mean(+) - mean(-)|``.
    """

    unit: np.ndarray
    scale: float
    mean_neg: np.ndarray
    variance: np.ndarray
    norm: float


def persona_geometry(model, tokenizer, train: pd.DataFrame, layers, extraction, persona: str) -> dict[int, Geometry]:
    """``{layer: Geometry}`` from one extraction pass over ``train`` (``personas.model.extraction``)."""
    acts, _ = extract_activations(model, tokenizer, train["statement"].tolist(), sorted(set(layers)), extraction,
                                  progress=False)
    pos = (train["direction"] == "positive").to_numpy()
    out = {}
    for layer, a in acts.items():
        a = a.astype(np.float64)
        diff = a[pos].mean(0) - a[~pos].mean(0)
        norm = float(np.linalg.norm(diff))
        if norm == 0:
            raise ValueError(f"persona {persona!r}: mean(+) equals mean(-) at layer {layer}; no direction to steer")
        out[layer] = Geometry(diff / norm, float(np.linalg.norm(a, axis=1).mean()), a[~pos].mean(0), a.var(0), norm)
    return out


def top_variance_nodes(geom: Geometry, size: int) -> np.ndarray:
    """The ``size`` nodes of largest variance over the training statements (sorted indices)."""
    return np.sort(np.argsort(-geom.variance, kind="stable")[:size])


@dataclass(frozen=True)
class Site:
    """Where an arm edits: a layer, the token positions, and where the model's blocks and final norm are.

    ``blocks_path`` and ``final_norm`` are ``ExtractionSettings``' overrides, so an edit lands where
    extraction reads (:mod:`personas.model.hooks`).
    """

    layer: int
    positions: str = "all"
    blocks_path: str | None = None
    final_norm: str | None = "auto"

    def at(self, layer: int) -> "Site":
        return replace(self, layer=layer)

    def steer(self, model, vector: np.ndarray):
        """A context adding ``vector`` at this site (:func:`personas.model.interventions.add_vector`)."""
        return add_vector(model, self.layer, vector, positions=self.positions, blocks_path=self.blocks_path,
                          final_norm=self.final_norm)

    def ablate(self, model, nodes: np.ndarray, values: np.ndarray):
        """A context setting ``nodes`` to ``values`` at this site (:func:`~personas.model.interventions.ablate_nodes`)."""
        return ablate_nodes(model, self.layer, nodes, values, positions=self.positions, blocks_path=self.blocks_path,
                            final_norm=self.final_norm)


def steering_arms(model, site: Site, geom: Geometry, alphas, n_random: int, key: tuple) -> Iterator:
    """The persona direction and ``n_random`` random directions of the same norm, at every alpha.

    ``key = (seed, persona)`` seeds the random directions.
    """
    randoms = random_unit_directions(*key, len(geom.unit), n_random)
    for alpha in alphas:
        vec = alpha * geom.scale * geom.unit
        yield "direction", alpha, 0, lambda v=vec: site.steer(model, v)
        for k in range(n_random):
            rvec = alpha * geom.scale * randoms[k]
            yield "random_direction", alpha, k, lambda v=rvec: site.steer(model, v)


def ablation_arms(model, site: Site, geom: Geometry, nodes: np.ndarray, n_random: int, key: tuple,
                  top_variance: bool = True) -> Iterator:
    """Salient nodes set to their background mean; as many random nodes; as many top-variance nodes."""
    values = geom.mean_neg
    yield "salient_ablation", np.nan, 0, lambda: site.ablate(model, nodes, values)
    for k, pick in enumerate(random_node_draws(*key, len(geom.unit), len(nodes), n_random)):
        yield "random_ablation", np.nan, k, lambda p=pick: site.ablate(model, p, values)
    if top_variance:
        top = top_variance_nodes(geom, len(nodes))
        yield "top_variance_ablation", np.nan, 0, lambda: site.ablate(model, top, values)


def restricted_arms(model, site: Site, geom: Geometry, nodes: np.ndarray, alphas, n_random: int,
                    key: tuple) -> Iterator:
    """The direction's components on the salient nodes only, against its components on as many random nodes."""
    hidden = len(geom.unit)
    masks = []
    for pick in random_node_draws(key[0], f"{key[1]}:restricted", hidden, len(nodes), n_random):
        m = np.zeros(hidden)
        m[pick] = 1.0
        masks.append(m)
    salient = np.zeros(hidden)
    salient[nodes] = 1.0
    for alpha in alphas:
        vec = alpha * geom.scale * geom.unit
        yield "salient_direction", alpha, 0, lambda v=vec * salient: site.steer(model, v)
        for k, m in enumerate(masks):
            yield "random_restricted_direction", alpha, k, lambda v=vec * m: site.steer(model, v)


@dataclass
class HeldOut:
    """One persona's held-out statements under one readout: prepared prompts, baseline, bootstrap."""

    persona: str
    readout: str
    prepared: object
    ids: np.ndarray
    directions: np.ndarray
    positive: np.ndarray
    boot: tuple
    base: np.ndarray | None = None
    gate: dict = field(default_factory=dict)


def held_out(persona: str, readout, heldout: pd.DataFrame, tokenizer, settings, seed: int,
             share_prefix: bool) -> HeldOut:
    """Prepare one readout on one persona's held-out statements (no forward pass yet)."""
    prepared = readout.prepare(tokenizer, heldout["statement"].tolist(), settings.batch_size, share_prefix,
                               settings.extraction.blocks_path)
    positive = (heldout["direction"] == "positive").to_numpy()
    boot = bootstrap_index(positive, settings.n_boot, derive_rng(seed, persona, "bootstrap"))
    return HeldOut(persona, readout.name, prepared, heldout["id"].astype(str).to_numpy(),
                   heldout["direction"].to_numpy(), positive, boot)


def alpha_key(alpha) -> float | None:
    """An alpha as a dictionary key: None for the ablations (alpha NaN)."""
    return None if alpha is None or np.isnan(alpha) else float(alpha)


class Recorder:
    """Runs prepared readouts under arms, counts forward passes, keeps every shift and its summary."""

    def __init__(self, ci: float, bar, reuse: bool):
        self.ci, self.bar, self.reuse = ci, bar, reuse
        self.shifts: dict[tuple, np.ndarray] = {}
        self.effects: list[dict] = []
        self.frames: list[pd.DataFrame] = []
        self.n_passes = 0

    def _scores(self, h: HeldOut, layer: int, context: Callable | None) -> np.ndarray:
        reuse = layer if (self.reuse and layer >= 1) else None
        if context is None:
            got = h.prepared.scores(self._model, reuse_below=reuse)
        else:
            with context():
                got = h.prepared.scores(self._model, reuse_below=reuse)
        self.n_passes += 1
        self.bar.update(1)
        return got

    def prime(self, h: HeldOut, layer: int) -> None:
        """Cache the block outputs below ``layer`` while no intervention is active."""
        if self.reuse and layer >= 1:
            h.prepared.prime(self._model, layer)

    def baseline(self, model, h: HeldOut, layer: int) -> dict:
        """Score the held-out statements without intervention; the gate: AUC with its bootstrap interval."""
        self._model = model
        self.prime(h, layer)
        h.base = self._scores(h, layer, None)
        auc, lo, hi = auc_interval(h.base, h.positive, h.boot, self.ci)
        h.gate = {"persona": h.persona, "readout": h.readout, "n_heldout": len(h.base), "auc": auc, "auc_low": lo,
                  "auc_high": hi, "informative": is_informative(auc, lo, hi, h.base),
                  "mean_positive": float(h.base[h.positive].mean()), "mean_negative": float(h.base[~h.positive].mean())}
        self._frame(h, layer, "baseline", 0.0, 0, h.base)
        return h.gate

    def run(self, model, h: HeldOut, layer: int, arm: tuple, steer: str | None = None) -> dict:
        """Score under one arm; record its shifts (key ``(persona, readout, layer, intervention, alpha, draw)``)."""
        self._model = model
        intervention, alpha, draw, context = arm
        key = (h.persona, h.readout, layer, intervention, alpha_key(alpha), draw, steer or h.persona)
        if key in self.shifts:  # the same arm was run already (e.g. dose response at the main alphas)
            return next(e for e in self.effects if e["_key"] == key)
        score = self._scores(h, layer, context)
        self.shifts[key] = score - h.base
        row = {"persona": h.persona, "readout": h.readout, "layer": layer, "intervention": intervention,
               "alpha": alpha, "draw": draw, "steer_persona": steer or h.persona,
               **effect_summary(score, h.base, h.positive, h.boot, self.ci), "_key": key}
        self.effects.append(row)
        if steer is None:
            self._frame(h, layer, intervention, alpha, draw, score)
        return row

    def _frame(self, h: HeldOut, layer, intervention, alpha, draw, score) -> None:
        self.frames.append(pd.DataFrame({"persona": h.persona, "readout": h.readout, "layer": layer,
                                         "intervention": intervention, "alpha": alpha, "draw": draw, "id": h.ids,
                                         "direction": h.directions, "score": score, "shift": score - h.base}))

    def effects_table(self) -> pd.DataFrame:
        return pd.DataFrame([{k: v for k, v in e.items() if k != "_key"} for e in self.effects])
