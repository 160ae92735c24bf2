"""The causal check: steer along the persona direction and ablate the salient nodes, on each readout,
against random and harder controls; specificity across personas; dose response over layers; steered
text (:mod:`personas.causal.text_check`).

What passes between the phases is typed: ``_Check`` (what is checked and how, fixed before the first
pass), ``_Plan`` (who enters the specificity matrix and the dose response, at which layers),
``_Prepared`` (the directions and the prepared held-out readouts) and ``_Phases`` (what the tables are
built from). Each helper's signature says what it reads; none writes into another's inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from personas._core.checks import check_bool, check_seed, check_settings
from personas._core.provenance import now_iso, package_versions
from personas.causal.arms import (Geometry, HeldOut, Recorder, Site, ablation_arms, held_out, persona_geometry,
                                  restricted_arms, steering_arms)
from personas.causal.compare import comparisons, dose_table, row_permutation_test, specificity_table
from personas.causal.directions import OWN_SOURCE, check_file_directions, file_geometry
from personas.causal.results import CausalResult
from personas.causal.settings import CausalSettings
from personas.causal.split import split_statements
from personas.causal.text_check import SteeredText, TextPersona, steered_text_check
from personas.model.batching import accepts
from personas.model.directions import Direction
from personas.model.hooks import layer_info, resolve_layers
from personas.model.interventions import check_nodes
from personas.model.loading import model_info
from personas.model.readouts import Readout, resolve_readout

__all__ = ["causal_check"]


@dataclass(frozen=True)
class _Check:
    """What one causal check does, fixed before its first forward pass.

    ``readouts`` are those the model can express (the first is the *main* readout: every arm, the
    specificity matrix, the dose response); ``not_applicable`` maps the others' names to why not.
    ``nodes`` holds the personas with salient nodes, ``directions`` those steered along a file's
    direction (:mod:`personas.causal.directions`); a checked persona is in one or both.
    """

    settings: CausalSettings
    seed: int
    site: Site
    checked: tuple[str, ...]
    nodes: Mapping[str, np.ndarray]
    directions: Mapping[str, Direction]
    readouts: tuple[Readout, ...]
    not_applicable: Mapping[str, str]
    share: bool
    exclude: frozenset
    n_blocks: int
    hidden_size: int
    layer_convention: str


@dataclass(frozen=True)
class _Plan:
    """Which personas enter the specificity matrix and the dose response, and the dose layers;
    ``dose_skipped``: personas with a file direction left out of the dose response (their direction
    exists at the check's layer only)."""

    specificity: tuple[str, ...]
    dose_personas: tuple[str, ...]
    dose_layers: tuple[int, ...]
    dose_skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Prepared:
    """Per persona: its geometry at each layer it needs, its held-out statements and ids, and where
    a file direction came from (``sources``, :func:`personas.causal.directions.file_geometry`); per
    ``(persona, readout name)``: the prepared held-out readout."""

    geoms: Mapping[str, dict[int, Geometry]]
    held: Mapping[tuple[str, str], HeldOut]
    heldout: Mapping[str, pd.DataFrame]
    ids: Mapping[str, dict]
    sources: Mapping[str, dict]


@dataclass(frozen=True)
class _Phases:
    """What the result's tables are built from, and the pass count and seconds of each phase."""

    prepared: _Prepared
    gate: pd.DataFrame
    specificity: pd.DataFrame
    specificity_test: dict
    dose: pd.DataFrame
    counts: dict
    text: SteeredText | None = None


def _check(model, tokenizer, statements, salient_nodes, directions, layer, settings, seed, exclude_ids) -> _Check:
    missing = [c for c in ("id", "persona", "direction", "statement") if c not in statements.columns]
    if missing:
        raise ValueError(f"statements lacks columns {missing}; use personas.statements.load_statements")
    ex = settings.extraction
    where = layer_info(model, ex.blocks_path, ex.final_norm)
    (layer,) = resolve_layers([layer], where["n_blocks"])
    site = Site(layer, settings.edit_positions, ex.blocks_path, ex.final_norm)
    files = check_file_directions(directions, model, statements, site)
    checked = list(dict.fromkeys([*salient_nodes, *files]))
    if not checked:
        raise ValueError("no personas to check; pass salient_nodes={persona: nodes} or directions={persona: Direction}")
    nodes = {p: check_nodes(list(salient_nodes[p]), where["hidden_size"], f"salient_nodes[{p!r}]")
             for p in checked if p in salient_nodes}
    readouts = [resolve_readout(r, settings) for r in settings.readouts]
    if len({r.name for r in readouts}) != len(readouts):
        raise ValueError(f"readouts must have distinct names; got {[r.name for r in readouts]}")
    why = {r.name: r.not_applicable(model, tokenizer) for r in readouts}
    share = settings.edit_positions == "all" and accepts(model, "past_key_values") and accepts(model, "use_cache")
    return _Check(settings=settings, seed=seed, site=site, checked=tuple(checked), nodes=nodes, directions=files,
                  readouts=tuple(r for r in readouts if why[r.name] is None),
                  not_applicable={k: v for k, v in why.items() if v is not None}, share=share,
                  exclude=frozenset(map(str, exclude_ids)), n_blocks=where["n_blocks"],
                  hidden_size=where["hidden_size"], layer_convention=where["layer_convention"])


def _plan(check: _Check, statements: pd.DataFrame) -> _Plan:
    """Which personas go into the specificity matrix and the dose response, at which layers."""
    settings, checked = check.settings, list(check.checked)
    spec = []
    if settings.n_specificity and check.readouts:
        others = [p for p in dict.fromkeys(statements["persona"]) if p not in checked]
        spec = (checked + others)[: settings.n_specificity]
        if len(spec) < 2:
            spec = []
    n_blocks = check.n_blocks
    dose_layers = settings.dose_layers
    if dose_layers is None:
        dose_layers = (max(1, n_blocks // 4), max(1, n_blocks // 2), check.site.layer)
    dose_layers = sorted(set(resolve_layers(list(dose_layers), n_blocks)))
    skipped = [p for p in checked if p in check.directions and dose_layers != [check.site.layer]]
    dose_personas = [p for p in checked if p not in skipped][: settings.n_dose_personas] if check.readouts else []
    return _Plan(tuple(spec), tuple(dose_personas), tuple(dose_layers), tuple(skipped))


def _prepare(model, tokenizer, statements, check: _Check, plan: _Plan, bar) -> _Prepared:
    """Split, read the training statements (one extraction pass each), prepare every readout's prompts."""
    settings, seed = check.settings, check.seed
    geoms, held, heldouts, ids, sources = {}, {}, {}, {}, {}
    for persona in dict.fromkeys(check.checked + plan.specificity):
        heldout, train = split_statements(statements, persona, n_heldout=settings.n_heldout,
                                          n_train=settings.n_train, exclude_ids=check.exclude, seed=seed)
        layers = [check.site.layer] + (list(plan.dose_layers) if persona in plan.dose_personas else [])
        geoms[persona] = persona_geometry(model, tokenizer, train, layers, settings.extraction, persona)
        if persona in check.directions:
            layer = check.site.layer
            geoms[persona][layer], sources[persona] = file_geometry(geoms[persona][layer], check.directions[persona])
        bar.update(1)
        readouts = check.readouts if persona in check.checked else check.readouts[:1]
        for readout in readouts:
            held[(persona, readout.name)] = held_out(persona, readout, heldout, tokenizer, settings, seed,
                                                     check.share)
        heldouts[persona] = heldout
        ids[persona] = {"heldout_ids": heldout["id"].astype(str).tolist(),
                        "train_ids": train["id"].astype(str).tolist()}
    return _Prepared(geoms, held, heldouts, ids, sources)


def _main_arms(model, rec: Recorder, h: HeldOut, geom: Geometry, nodes: np.ndarray | None, check: _Check,
               full: bool) -> None:
    """The arms of one persona on one readout at the check's layer.

    Every arm when ``full`` (the main readout): steering and its random directions at every alpha,
    the ablations, and the restricted direction at the positive alphas. Otherwise ``MAIN_ARMS``: the
    steering arm and its random directions. Without salient nodes (``nodes`` None: a persona given
    a file direction only) the steering arms alone.
    """
    s, site, key = check.settings, check.site, (check.seed, h.persona)
    arms = list(steering_arms(model, site, geom, s.alphas, s.n_random_directions, key))
    if full and nodes is not None:
        arms += list(ablation_arms(model, site, geom, nodes, s.n_random_nodes, key))
        positive = [a for a in s.alphas if a > 0] or list(s.alphas[-1:])
        arms += list(restricted_arms(model, site, geom, nodes, positive, s.n_random_directions, key))
    for arm in arms:
        rec.run(model, h, site.layer, arm)


def _specificity(model, rec: Recorder, prepared: _Prepared, check: _Check,
                 plan: _Plan) -> tuple[pd.DataFrame, dict]:
    s, site, main = check.settings, check.site, check.readouts[0].name
    spec = list(plan.specificity)
    for steer in spec:
        vec_arm = next(steering_arms(model, site, prepared.geoms[steer][site.layer], [s.specificity_alpha], 0,
                                     (check.seed, steer)))
        for read in spec:
            rec.run(model, prepared.held[(read, main)], site.layer, vec_arm, steer=None if read == steer else steer)
    table, matrix = specificity_table(rec.effects_table(), spec, main, site.layer, s.specificity_alpha)
    return table, row_permutation_test(matrix, s.n_permutations, check.seed)


def _dose(model, rec: Recorder, tokenizer, prepared: _Prepared, check: _Check, plan: _Plan) -> pd.DataFrame:
    """The dose response on the main readout; on the first ``n_dose_heldout`` held-out statements per
    direction when that is fewer than ``n_heldout`` (its own baseline and recorder), else on all of them."""
    if not plan.dose_personas:
        return pd.DataFrame()
    s, readout = check.settings, check.readouts[0]
    alphas = [a for a in s.dose_alphas if a != 0]
    subset = s.n_dose_heldout is not None and s.n_dose_heldout < s.n_heldout
    dose_rec = Recorder(s.ci, rec.bar, s.reuse_prefix) if subset else rec
    for persona in plan.dose_personas:
        h = prepared.held[(persona, readout.name)]
        if subset:
            frame = prepared.heldout[persona].groupby("direction", sort=False).head(s.n_dose_heldout)
            h = held_out(persona, readout, frame, tokenizer, s, check.seed, check.share)
            dose_rec.baseline(model, h, plan.dose_layers[0])
        for layer in plan.dose_layers:
            dose_rec.prime(h, layer)
            for arm in steering_arms(model, check.site.at(layer), prepared.geoms[persona][layer], alphas,
                                     s.n_dose_random, (check.seed, persona)):
                dose_rec.run(model, h, layer, arm)
    if subset:
        rec.n_passes += dose_rec.n_passes
    return dose_table(dose_rec.effects_table(), list(plan.dose_personas), list(plan.dose_layers), readout.name,
                      s.dose_alphas, s.n_dose_random)


def _not_applicable_rows(check: _Check) -> list[dict]:
    """Gate rows of the readouts the model cannot express: never informative, with the reason."""
    return [{"persona": p, "readout": name, "n_heldout": 0, "auc": np.nan, "auc_low": np.nan, "auc_high": np.nan,
             "informative": False, "mean_positive": np.nan, "mean_negative": np.nan,
             "not_applicable": why} for p in check.checked for name, why in check.not_applicable.items()]


def _phases(model, rec: Recorder, statements, tokenizer, check: _Check, plan: _Plan) -> _Phases:
    """Run everything; returns the tables' ingredients and the pass count and time of each phase."""
    counts = {}
    t0, c0, n0 = time.perf_counter(), time.process_time(), rec.n_passes

    def tick(name):  # wall seconds, and CPU seconds of this process (all threads): robust to shared cores
        nonlocal t0, c0, n0
        counts[name] = {"passes": rec.n_passes - n0, "seconds": round(time.perf_counter() - t0, 2),
                        "cpu_seconds": round(time.process_time() - c0, 2)}
        t0, c0, n0 = time.perf_counter(), time.process_time(), rec.n_passes

    prepared = _prepare(model, tokenizer, statements, check, plan, rec.bar) if check.readouts else \
        _Prepared({}, {}, {}, {}, {})  # no readout the model can express: nothing to read, no direction needed
    tick("extraction")
    gate = [rec.baseline(model, h, check.site.layer) for h in prepared.held.values()]
    tick("baseline")
    for persona in check.checked:
        for i, readout in enumerate(check.readouts):
            h = prepared.held[(persona, readout.name)]
            if check.settings.skip_uninformative and not h.gate["informative"]:
                continue
            _main_arms(model, rec, h, prepared.geoms[persona][check.site.layer], check.nodes.get(persona), check,
                       full=(i == 0))
    tick("main_arms")
    specificity, test = (pd.DataFrame(), {}) if not plan.specificity else \
        _specificity(model, rec, prepared, check, plan)
    tick("specificity")
    dose = _dose(model, rec, tokenizer, prepared, check, plan)
    tick("dose_response")
    text = _steered_text(model, tokenizer, statements, check, prepared, not rec.bar.disable)
    tick("steered_text")
    gate_table = pd.DataFrame(gate + _not_applicable_rows(check))
    if check.not_applicable and "not_applicable" in gate_table:
        gate_table["not_applicable"] = gate_table["not_applicable"].fillna("")
    return _Phases(prepared, gate_table, specificity, test, dose, counts, text)


def _steered_text(model, tokenizer, statements, check: _Check, prepared: _Prepared, progress: bool):
    """The steered-text arm (:mod:`personas.causal.text_check`) at the check's layer, or None when off."""
    if not check.settings.steered_text:
        return None
    layer = check.site.layer
    personas = [TextPersona(p, prepared.geoms[p][layer], tuple(prepared.ids[p]["heldout_ids"]),
                            tuple(prepared.ids[p]["train_ids"])) for p in check.checked if p in prepared.geoms]
    return steered_text_check(model, tokenizer, statements, personas, check.site, check.settings, check.seed,
                              check.exclude, progress=progress)


def causal_check(
    model,
    tokenizer,
    statements: pd.DataFrame,
    salient_nodes: Mapping[str, Iterable[int]],
    layer: int,
    settings: CausalSettings | None = None,
    *,
    seed: int = 0,
    directions: Mapping[str, Direction] | None = None,
    exclude_ids: Iterable[str] = (),
    progress: bool = True,
) -> CausalResult:
    """Steer along each persona's direction and ablate its salient nodes at ``layer``, on each readout.

        result = causal_check(model, tokenizer, load_statements(personas, n_per_direction=None),
                              salient_sets, layer=22, settings=CausalSettings(), exclude_ids=store_ids)
        save_causal_result(result, "output/default/causal")

    A direction made elsewhere (``load_direction``, ``import_control_vector``) runs through the
    same check: ``directions={"agreeableness": direction}`` (:mod:`personas.causal.directions`).

    Parameters
    ----------
    model : transformers causal LM with its LM head (``load_model(..., head=True)``)
    tokenizer : its tokenizer
    statements : DataFrame
        ``id, persona, direction, statement``: every statement available per persona; the
        specificity matrix also uses personas of this table that are not checked.
    salient_nodes : dict
        ``{persona: unit indices at layer}``. The personas checked are its keys and those of
        ``directions`` (check fewer by passing fewer).
    layer : int
        0..n_blocks (0 = embeddings, i = output of block i).
    settings : CausalSettings, optional
        Readouts, sizes, strengths, controls (default: ``CausalSettings()``). Its
        ``extraction.blocks_path`` / ``final_norm`` place every read and every edit.
    seed : int
        Seeds every draw (held-out split, random controls, bootstrap, permutations).
    directions : dict, optional
        ``{persona: Direction}``: steer the persona along this direction's unit vector instead of
        the unit mean(+) - mean(-) of its training statements; the held-out split, gate, scale
        (alpha x the mean norm of its training statements' hidden states), random directions and
        specificity row are its own. The direction must be at ``layer`` and fit the model
        (``check_direction_fits``). A persona with a file direction and no salient nodes runs the
        steering arms only; one with a file direction stays out of a dose response at other
        layers. ``meta["per_persona"][p]["direction_source"]`` records the file's provenance,
        the vector's SHA-256 and its cosine with our direction.
    exclude_ids : iterable of str
        Statement ids in DeepScan's pools (e.g. the activation store's): never held out.
    progress : bool
        A progress bar over forward passes.

    Returns
    -------
    CausalResult
        A readout the model cannot express (e.g. no LM head) is a gate row marked
        ``not_applicable`` with the reason, and runs no arm.
    """
    settings = check_settings(settings, CausalSettings, "settings")
    seed, progress = check_seed(seed), check_bool(progress, "progress")
    check = _check(model, tokenizer, statements, salient_nodes, directions, layer, settings, seed, exclude_ids)
    plan = _plan(check, statements)
    bar = tqdm(desc="causal", unit="pass", disable=not progress)
    rec = Recorder(settings.ci, bar, settings.reuse_prefix)
    started = time.perf_counter()
    phases = _phases(model, rec, statements, tokenizer, check, plan)
    bar.close()
    effects = rec.effects_table()
    meta = _meta(model, check, plan, phases, rec)
    meta["seconds"] = round(time.perf_counter() - started, 2)
    test = phases.specificity_test
    return CausalResult(
        gate=phases.gate, scores=pd.concat(rec.frames, ignore_index=True) if rec.frames else pd.DataFrame(),
        effects=effects, comparisons=comparisons(effects, rec.shifts, phases.prepared.held, settings.ci),
        specificity=phases.specificity, specificity_test=pd.DataFrame([test]) if test else pd.DataFrame(),
        dose_response=phases.dose, meta=meta, **(phases.text.tables() if phases.text else {}),
    )


def _meta(model, check: _Check, plan: _Plan, phases: _Phases, rec: Recorder) -> dict:
    return {
        "created": now_iso(), "model": model_info(model), "layer": check.site.layer, "n_blocks": check.n_blocks,
        "hidden_size": check.hidden_size, "layer_convention": check.layer_convention, "seed": check.seed,
        "personas": list(check.checked), "settings": check.settings.record(),
        "readouts": [r.describe() for r in check.readouts],
        "not_applicable": dict(check.not_applicable),
        "specificity_personas": list(plan.specificity), "dose_personas": list(plan.dose_personas),
        "dose_layers": list(plan.dose_layers), "dose_skipped": list(plan.dose_skipped),
        "file_directions": list(check.directions), "steering_only": [p for p in check.checked if p not in check.nodes],
        "n_excluded_ids": len(check.exclude), "shared_prefix": check.share,
        "n_passes": rec.n_passes, "phases": phases.counts,
        "steered_text": phases.text.meta if phases.text else None,
        "per_persona": _per_persona(phases.prepared, check),
        "direction": "unit mean(+) - mean(-) of the training hidden states read as extraction reads them, or "
                     "the unit vector of a file's direction (file_directions; per_persona direction_source)",
        "steering_scale": "alpha x mean norm of the training hidden states at the layer",
        "ablation_values": "mean over the persona's training negative statements at the layer",
        "versions": package_versions(),
    }


def _per_persona(prepared: _Prepared, check: _Check) -> dict:
    info, layer = {}, check.site.layer
    for persona, ids in prepared.ids.items():
        geom = prepared.geoms[persona]
        row = dict(ids, scale={str(k): g.scale for k, g in geom.items()},
                   direction_norm={str(k): g.norm for k, g in geom.items()},
                   direction_source=prepared.sources.get(persona, OWN_SOURCE))
        if persona in check.nodes:
            row["n_salient"] = len(check.nodes[persona])
            row["salient_norm_fraction"] = float(np.linalg.norm(geom[layer].unit[check.nodes[persona]]))
        row["reused_prefix"] = {name: bool(getattr(h.prepared, "reused", False))
                                for (p, name), h in prepared.held.items() if p == persona}
        info[persona] = row
    return info
