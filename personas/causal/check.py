"""The causal check: steer along the persona direction and ablate the salient nodes, on each readout,
against random and harder controls; specificity across personas; dose response over layers."""

from __future__ import annotations

import time
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from personas._core.checks import check_bool, check_seed
from personas._core.provenance import now_iso, package_versions
from personas.causal.arms import (Geometry, HeldOut, Recorder, ablation_arms, held_out, persona_geometry,
                                  restricted_arms, steering_arms)
from personas.causal.compare import (comparisons, dose_table, row_permutation_test, specificity_table)
from personas.causal.results import CausalResult
from personas.causal.settings import CausalSettings
from personas.causal.split import split_statements
from personas.model.batching import accepts
from personas.model.hooks import layer_info, resolve_layers
from personas.model.interventions import check_nodes
from personas.model.readouts import resolve_readout

__all__ = ["causal_check"]


def _validate(statements, salient_nodes, personas, model, layer) -> tuple[list[str], dict, int, dict]:
    missing = [c for c in ("id", "persona", "direction", "statement") if c not in statements.columns]
    if missing:
        raise ValueError(f"statements lacks columns {missing}; use personas.statements.load_statements")
    where = layer_info(model)
    (layer,) = resolve_layers([layer], where["n_blocks"])
    personas = list(salient_nodes) if personas is None else list(personas)
    if not personas:
        raise ValueError("no personas to check; pass salient_nodes={persona: nodes}")
    unknown = [p for p in personas if p not in salient_nodes]
    if unknown:
        raise ValueError(f"personas {unknown} have no salient nodes; salient_nodes has {sorted(salient_nodes)}")
    nodes = {p: check_nodes(list(salient_nodes[p]), where["hidden_size"], f"salient_nodes[{p!r}]") for p in personas}
    return personas, nodes, layer, where


def _plan(settings: CausalSettings, statements: pd.DataFrame, checked: list[str], layer: int, where: dict) -> dict:
    """Which personas go into the specificity matrix and the dose response, at which layers."""
    spec = []
    if settings.n_specificity:
        others = [p for p in dict.fromkeys(statements["persona"]) if p not in checked]
        spec = (checked + others)[: settings.n_specificity]
        if len(spec) < 2:
            spec = []
    n_blocks = where["n_blocks"]
    dose_layers = settings.dose_layers
    if dose_layers is None:
        dose_layers = (max(1, n_blocks // 4), max(1, n_blocks // 2), layer)
    dose_layers = sorted(set(resolve_layers(list(dose_layers), n_blocks)))
    return {"specificity": spec, "dose_personas": checked[: settings.n_dose_personas], "dose_layers": dose_layers}


def _prepare(model, tokenizer, statements, plan: dict, ctx: dict) -> tuple[dict, dict, dict]:
    """Split, read the training statements (one extraction pass each), prepare every readout's prompts."""
    settings, seed = ctx["settings"], ctx["seed"]
    geoms, held, ids = {}, {}, {}
    for persona in dict.fromkeys(ctx["checked"] + plan["specificity"]):
        heldout, train = split_statements(statements, persona, n_heldout=settings.n_heldout,
                                          n_train=settings.n_train, exclude_ids=ctx["exclude"], seed=seed)
        layers = [ctx["layer"]] + (plan["dose_layers"] if persona in plan["dose_personas"] else [])
        geoms[persona] = persona_geometry(model, tokenizer, train, layers, settings.extraction, persona)
        ctx["bar"].update(1)
        readouts = ctx["readouts"] if persona in ctx["checked"] else ctx["readouts"][:1]
        for readout in readouts:
            held[(persona, readout.name)] = held_out(persona, readout, heldout, tokenizer, settings, seed,
                                                     ctx["share"])
        ctx["heldout"][persona] = heldout
        ids[persona] = {"heldout_ids": heldout["id"].astype(str).tolist(),
                        "train_ids": train["id"].astype(str).tolist()}
    return geoms, held, ids


def _main_arms(model, rec: Recorder, h: HeldOut, geom: Geometry, nodes: np.ndarray, ctx: dict, full: bool) -> None:
    """The arms of one persona on one readout at the check's layer.

    Every arm when ``full`` (the first readout): steering and its random directions at every alpha,
    the ablations, and the restricted direction at the positive alphas. Otherwise ``MAIN_ARMS``: the
    steering arm and its random directions.
    """
    s, layer, key, pos = ctx["settings"], ctx["layer"], (ctx["seed"], h.persona), ctx["settings"].edit_positions
    arms = list(steering_arms(model, layer, geom, s.alphas, s.n_random_directions, key, pos))
    if full:
        arms += list(ablation_arms(model, layer, geom, nodes, s.n_random_nodes, key, pos))
        positive = [a for a in s.alphas if a > 0] or list(s.alphas[-1:])
        arms += list(restricted_arms(model, layer, geom, nodes, positive, s.n_random_directions, key, pos))
    for arm in arms:
        rec.run(model, h, layer, arm)


def _specificity(model, rec: Recorder, geoms: dict, held: dict, plan: dict, ctx: dict) -> tuple[pd.DataFrame, dict]:
    s, layer, main = ctx["settings"], ctx["layer"], ctx["readouts"][0].name
    spec = plan["specificity"]
    for steer in spec:
        vec_arm = next(steering_arms(model, layer, geoms[steer][layer], [s.specificity_alpha], 0,
                                     (ctx["seed"], steer), s.edit_positions))
        for read in spec:
            rec.run(model, held[(read, main)], layer, vec_arm, steer=None if read == steer else steer)
    table, matrix = specificity_table(rec.effects_table(), spec, main, layer, s.specificity_alpha)
    return table, row_permutation_test(matrix, s.n_permutations, ctx["seed"])


def _dose(model, rec: Recorder, geoms: dict, held: dict, plan: dict, ctx: dict) -> pd.DataFrame:
    """The dose response on the main readout; on the first ``n_dose_heldout`` held-out statements per
    direction when that is fewer than ``n_heldout`` (its own baseline and recorder), else on all of them."""
    s, readout = ctx["settings"], ctx["readouts"][0]
    alphas = [a for a in s.dose_alphas if a != 0]
    subset = s.n_dose_heldout is not None and s.n_dose_heldout < s.n_heldout
    dose_rec = Recorder(s.ci, ctx["bar"], s.reuse_prefix) if subset else rec
    for persona in plan["dose_personas"]:
        h = held[(persona, readout.name)]
        if subset:
            frame = ctx["heldout"][persona].groupby("direction", sort=False).head(s.n_dose_heldout)
            h = held_out(persona, readout, frame, ctx["tokenizer"], s, ctx["seed"], ctx["share"])
            dose_rec.baseline(model, h, plan["dose_layers"][0])
        for layer in plan["dose_layers"]:
            dose_rec.prime(h, layer)
            for arm in steering_arms(model, layer, geoms[persona][layer], alphas, s.n_dose_random,
                                     (ctx["seed"], persona), s.edit_positions):
                dose_rec.run(model, h, layer, arm)
    if subset:
        rec.n_passes += dose_rec.n_passes
    return dose_table(dose_rec.effects_table(), plan["dose_personas"], plan["dose_layers"], readout.name,
                      s.dose_alphas, s.n_dose_random)


def _phases(model, rec: Recorder, statements, tokenizer, plan: dict, ctx: dict) -> dict:
    """Run everything; returns the tables' ingredients and the pass count and time of each phase."""
    counts, out = {}, {}
    t0, c0, n0 = time.perf_counter(), time.process_time(), rec.n_passes

    def tick(name):  # wall seconds, and CPU seconds of this process (all threads): robust to shared cores
        nonlocal t0, c0, n0
        counts[name] = {"passes": rec.n_passes - n0, "seconds": round(time.perf_counter() - t0, 2),
                        "cpu_seconds": round(time.process_time() - c0, 2)}
        t0, c0, n0 = time.perf_counter(), time.process_time(), rec.n_passes

    geoms, held, ids = _prepare(model, tokenizer, statements, plan, ctx)
    tick("extraction")
    gate = [rec.baseline(model, h, ctx["layer"]) for h in held.values()]
    tick("baseline")
    for persona in ctx["checked"]:
        for i, readout in enumerate(ctx["readouts"]):
            h = held[(persona, readout.name)]
            if ctx["settings"].skip_uninformative and not h.gate["informative"]:
                continue
            _main_arms(model, rec, h, geoms[persona][ctx["layer"]], ctx["nodes"][persona], ctx, full=(i == 0))
    tick("main_arms")
    out["specificity"], out["specificity_test"] = (pd.DataFrame(), {}) if not plan["specificity"] else \
        _specificity(model, rec, geoms, held, plan, ctx)
    tick("specificity")
    out["dose"] = _dose(model, rec, geoms, held, plan, ctx)
    tick("dose_response")
    out.update(gate=pd.DataFrame(gate), geoms=geoms, held=held, ids=ids, counts=counts)
    return out


def causal_check(
    model,
    tokenizer,
    statements: pd.DataFrame,
    salient_nodes: Mapping[str, Iterable[int]],
    layer: int,
    settings: CausalSettings | None = None,
    *,
    seed: int = 0,
    personas: Sequence[str] | None = None,
    exclude_ids: Iterable[str] = (),
    progress: bool = True,
) -> CausalResult:
    """Steer along each persona's direction and ablate its salient nodes at ``layer``, on each readout.

        result = causal_check(model, tokenizer, load_statements(personas, n_per_direction=None),
                              salient_sets, layer=22, settings=CausalSettings(), exclude_ids=store_ids)
        save_causal_result(result, "output/default/causal")

    Parameters
    ----------
    model : transformers causal LM with its LM head (``load_model(..., head=True)``)
    tokenizer : its tokenizer
    statements : DataFrame
        ``id, persona, direction, statement``: every statement available per persona; the
        specificity matrix also uses personas of this table that are not checked.
    salient_nodes : dict
        ``{persona: unit indices at layer}``.
    layer : int
        0..n_blocks (0 = embeddings, i = output of block i).
    settings : CausalSettings, optional
        Readouts, sizes, strengths, controls (default: ``CausalSettings()``).
    seed : int
        Seeds every draw (held-out split, random controls, bootstrap, permutations).
    personas : list of str, optional
        Personas checked (default: every key of ``salient_nodes``).
    exclude_ids : iterable of str
        Statement ids in DeepScan's pools (e.g. the activation store's): never held out.
    progress : bool
        A progress bar over forward passes.

    Returns
    -------
    CausalResult
    """
    from tqdm.auto import tqdm

    settings = CausalSettings() if settings is None else settings
    if not isinstance(settings, CausalSettings):
        raise TypeError(f"settings must be a CausalSettings; got {type(settings).__name__}")
    seed, progress = check_seed(seed), check_bool(progress, "progress")
    checked, nodes, layer, where = _validate(statements, salient_nodes, personas, model, layer)
    plan = _plan(settings, statements, checked, layer, where)
    readouts = [resolve_readout(r, likelihood_prompt=settings.likelihood_prompt, rule=settings.rule)
                for r in settings.readouts]
    if len({r.name for r in readouts}) != len(readouts):
        raise ValueError(f"readouts must have distinct names; got {[r.name for r in readouts]}")
    share = settings.edit_positions == "all" and accepts(model, "past_key_values") and accepts(model, "use_cache")
    bar = tqdm(desc="causal", unit="pass", disable=not progress)
    rec = Recorder(settings.ci, bar, settings.reuse_prefix)
    ctx = {"settings": settings, "seed": seed, "layer": layer, "checked": checked, "nodes": nodes, "bar": bar,
           "readouts": readouts, "share": share, "exclude": set(map(str, exclude_ids)),
           "tokenizer": tokenizer, "heldout": {}}
    started = time.perf_counter()
    out = _phases(model, rec, statements, tokenizer, plan, ctx)
    bar.close()
    effects = rec.effects_table()
    meta = _meta(model, ctx, plan, out, where, rec)
    meta["seconds"] = round(time.perf_counter() - started, 2)
    return CausalResult(
        gate=out["gate"], scores=pd.concat(rec.frames, ignore_index=True), effects=effects,
        comparisons=comparisons(effects, rec.shifts, out["held"], settings.ci), specificity=out["specificity"],
        specificity_test=pd.DataFrame([out["specificity_test"]]) if out["specificity_test"] else pd.DataFrame(),
        dose_response=out["dose"], meta=meta,
    )


def _meta(model, ctx: dict, plan: dict, out: dict, where: dict, rec: Recorder) -> dict:
    from personas.model.loading import model_info

    return {
        "created": now_iso(), "model": model_info(model), "layer": ctx["layer"], "n_blocks": where["n_blocks"],
        "hidden_size": where["hidden_size"], "layer_convention": where["layer_convention"], "seed": ctx["seed"],
        "personas": ctx["checked"], "settings": ctx["settings"].record(),
        "readouts": [r.describe() for r in ctx["readouts"]],
        "specificity_personas": plan["specificity"], "dose_personas": plan["dose_personas"],
        "dose_layers": plan["dose_layers"], "n_excluded_ids": len(ctx["exclude"]), "shared_prefix": ctx["share"],
        "n_passes": rec.n_passes, "phases": out["counts"],
        "per_persona": _per_persona(out, ctx["nodes"], ctx["layer"]),
        "direction": "unit mean(+) - mean(-) of the training hidden states read as extraction reads them",
        "steering_scale": "alpha x mean norm of the training hidden states at the layer",
        "ablation_values": "mean over the persona's training negative statements at the layer",
        "versions": package_versions(),
    }


def _per_persona(out: dict, nodes: dict, layer: int) -> dict:
    info = {}
    for persona, ids in out["ids"].items():
        geom = out["geoms"][persona]
        row = dict(ids, scale={str(k): g.scale for k, g in geom.items()},
                   direction_norm={str(k): g.norm for k, g in geom.items()})
        if persona in nodes:
            row["n_salient"] = len(nodes[persona])
            row["salient_norm_fraction"] = float(np.linalg.norm(geom[layer].unit[nodes[persona]]))
        row["reused_prefix"] = {name: bool(getattr(h.prepared, "reused", False))
                                for (p, name), h in out["held"].items() if p == persona}
        info[persona] = row
    return info
