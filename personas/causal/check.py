"""The causal check: ablate the salient nodes and steer along the persona direction, against random controls."""

from __future__ import annotations

import time
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from personas.model.answers import ANSWER_RULES, answer_tokens, prepare_answers
from personas._core.checks import check_bool, check_choice, check_float, check_int, check_seed
from personas.model.hooks import layer_info, resolve_layers
from personas.model.interventions import POSITIONS, ablate_nodes, add_vector, check_nodes
from personas._core.provenance import derive_rng, now_iso, package_versions
from personas.causal.results import ABLATION_METRICS, CausalResult, DEFAULT_ALPHAS, _STATS
from personas.causal.split import random_node_draws, random_unit_directions, split_statements
from personas.causal.stats import _auc, _bootstrap_index, empirical_test, shift_summary


# ------------------------------------------------------------------ the check


def _check_alphas(alphas) -> list[float]:
    out = sorted({check_float(a, "alphas entry") for a in alphas} - {0.0})
    if not out:
        raise ValueError("alphas must hold at least one non-zero value, e.g. (-0.5, 0.5)")
    return out


def causal_check(
    model,
    tokenizer,
    statements: pd.DataFrame,
    salient_nodes: Mapping[str, Iterable[int]],
    layer: int,
    *,
    personas: Sequence[str] | None = None,
    exclude_ids: Iterable[str] = (),
    n_heldout: int = 40,
    n_train: int | None = 100,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_random: int = 50,
    n_random_directions: int = 8,
    positions: str = "all",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 16,
    rule: str = "logsumexp",
    reuse_prefix: bool = True,
    progress: bool = True,
) -> CausalResult:
    """Ablate and steer at ``layer``; compare salient nodes and the persona direction with random controls.

    Parameters
    ----------
    model : transformers causal LM with its LM head (``load_model(..., head=True)``)
    tokenizer : its tokenizer, with a chat template
    statements : DataFrame
        Columns ``id, persona, direction, statement``: every statement available per
        persona (e.g. ``load_statements(personas, n_per_direction=None)``).
    salient_nodes : dict
        ``{persona: unit indices at layer}`` (``personas.nodes.salient_sets`` of a
        scan of this layer).
    layer : int
        0..n_blocks (0 = embeddings, i = output of block i).
    personas : list of str, optional
        Personas to check (default: every key of ``salient_nodes``).
    exclude_ids : iterable of str
        Statement ids in DeepScan's pools (e.g. the activation store's ids): never held out.
    n_heldout : int
        Held-out statements per direction and persona.
    n_train : int or None
        Training statements per direction for the direction and ablation values (None: all left).
    alphas : sequence of float
        Steering strengths in units of the mean activation norm; 0 is the baseline, added.
    n_random : int
        Random-node ablation draws (each of the salient set's size).
    n_random_directions : int
        Random-direction draws, each run at every alpha.
    positions : {"all", "last"}
        Token positions edited.
    n_boot : int
        Bootstrap replicates (statements resampled within each direction).
    ci : float
        Interval coverage.
    seed : int
        Seeds every draw (per persona, through ``derive_rng``).
    batch_size : int
        Prompts per forward pass.
    rule : {"logsumexp", "first"}
        Which tokens count as Yes/No (``personas.model.answers.answer_tokens``).
    reuse_prefix : bool
        Compute blocks 1..layer once per batch and reuse them for every intervention
        (exact: all interventions act at ``layer``); about n_blocks / (n_blocks - layer)
        times faster. Ignored at layer 0.
    progress : bool
        A progress bar over forward passes.

    Returns
    -------
    CausalResult
    """
    from tqdm.auto import tqdm

    from personas.model.loading import model_info

    seed = check_seed(seed)
    n_heldout = check_int(n_heldout, "n_heldout", min_val=2)
    if n_train is not None:
        n_train = check_int(n_train, "n_train", min_val=1)
    n_random = check_int(n_random, "n_random", min_val=0)
    n_random_directions = check_int(n_random_directions, "n_random_directions", min_val=0)
    n_boot = check_int(n_boot, "n_boot", min_val=1)
    ci = check_float(ci, "ci", min_val=0.0, max_val=1.0, include_min=False, include_max=False)
    check_choice(positions, "positions", POSITIONS)
    reuse_prefix = check_bool(reuse_prefix, "reuse_prefix")
    alphas = _check_alphas(alphas)
    missing_cols = [c for c in ("id", "persona", "direction", "statement") if c not in statements.columns]
    if missing_cols:
        raise ValueError(f"statements lacks columns {missing_cols}; use personas.statements.load_statements")
    where = layer_info(model)
    (layer,) = resolve_layers([layer], where["n_blocks"])
    hidden = where["hidden_size"]
    personas = list(salient_nodes) if personas is None else list(personas)
    if not personas:
        raise ValueError("no personas to check; pass salient_nodes={persona: nodes}")
    unknown = [p for p in personas if p not in salient_nodes]
    if unknown:
        raise ValueError(f"personas {unknown} have no salient nodes; salient_nodes has {sorted(salient_nodes)}")
    exclude_ids = set(map(str, exclude_ids))
    nodes_of = {p: check_nodes(list(salient_nodes[p]), hidden, f"salient_nodes[{p!r}]") for p in personas}

    n_passes = 2 + n_random + len(alphas) * (2 + n_random_directions)
    bar = tqdm(total=len(personas) * (n_passes + 1), desc="causal", unit="pass", disable=not progress)
    margin_rows, steer_rows, random_rows, ablation_rows, base_rows = [], [], [], [], []
    meta_personas, example = {}, ""
    tokens = answer_tokens(tokenizer, check_choice(rule, "rule", ANSWER_RULES))
    for persona in personas:
        t0 = time.perf_counter()
        heldout, train = split_statements(
            statements, persona, n_heldout=n_heldout, n_train=n_train, exclude_ids=exclude_ids, seed=seed
        )
        # direction and ablation values from training statements, read where the answer is given
        train_b = prepare_answers(tokenizer, train, batch_size=batch_size, tokens=tokens)
        acts = train_b.last_hidden(model, layer).astype(np.float64)
        bar.update(1)
        train_pos = (train["direction"] == "positive").to_numpy()
        mean_pos, mean_neg = acts[train_pos].mean(0), acts[~train_pos].mean(0)
        diff = mean_pos - mean_neg
        norm = float(np.linalg.norm(diff))
        if norm == 0:
            raise ValueError(f"persona {persona!r}: mean(+) equals mean(-) at layer {layer}; no direction to steer")
        unit = diff / norm
        scale = float(np.linalg.norm(acts, axis=1).mean())
        nodes = nodes_of[persona]
        mask = np.zeros(hidden)
        mask[nodes] = 1.0

        held_b = prepare_answers(tokenizer, heldout, batch_size=batch_size, tokens=tokens)
        example = example or held_b.prompt_example
        positive = (heldout["direction"] == "positive").to_numpy()
        ids = heldout["id"].astype(str).to_numpy()
        dirs = heldout["direction"].to_numpy()
        rng_boot = derive_rng(seed, persona, "bootstrap")
        boot = _bootstrap_index(positive, n_boot, rng_boot)

        reuse = layer if (reuse_prefix and layer >= 1) else None
        if reuse:
            held_b._prefix(model, reuse)  # filled now, before any intervention is active

        def run(ctx=None):
            if ctx is None:
                m = held_b.margins(model, reuse_below=reuse)
            else:
                with ctx:
                    m = held_b.margins(model, reuse_below=reuse)
            bar.update(1)
            return m

        base = run()

        def record(intervention, alpha, draw, m):
            margin_rows.append(
                pd.DataFrame(
                    {"persona": persona, "intervention": intervention, "alpha": alpha, "draw": draw, "id": ids,
                     "direction": dirs, "margin": m, "shift": m - base}
                )
            )
            row = {"persona": persona, "intervention": intervention, "alpha": alpha, "draw": draw}
            row.update(shift_summary(m, base, positive, boot, ci))
            steer_rows.append(row)
            return row

        record("baseline", 0.0, 0, base)
        base_rows.append(
            {"persona": persona, "n_heldout": len(base),
             **{k: v for k, v in shift_summary(base, base, positive).items() if k.startswith(("mean_margin", "acc"))},
             "auc": _auc(base, positive), "n_salient": len(nodes), "direction_norm": norm, "scale": scale}
        )

        kw = {"positions": positions}
        sal = record("salient_ablation", np.nan, 0,
                     run(ablate_nodes(model, layer, nodes, mean_neg, **kw)))
        rand = []
        for k, pick in enumerate(random_node_draws(seed, persona, hidden, len(nodes), n_random)):
            m = run(ablate_nodes(model, layer, pick, mean_neg, **kw))
            row = record("random_ablation", np.nan, k, m)
            rand.append(row)
            random_rows.append({"persona": persona, "draw": k, "n_nodes": len(nodes),
                                "n_salient_drawn": int(np.isin(pick, nodes).sum()),
                                **{s: row[s] for s in ("bias_shift", "specific_effect", "mean_abs_shift", "accuracy")}})
        for metric, alternative in ABLATION_METRICS.items():
            null = np.array([r[metric] for r in rand])
            pct, p = empirical_test(sal[metric], null, alternative)
            ablation_rows.append(
                {"persona": persona, "metric": metric, "salient": sal[metric], "salient_low": sal[f"{metric}_low"],
                 "salient_high": sal[f"{metric}_high"],
                 "random_mean": float(null.mean()) if len(null) else np.nan,
                 "random_std": float(null.std(ddof=1)) if len(null) > 1 else np.nan,
                 "percentile": pct, "p_value": p, "alternative": alternative, "n_nodes": len(nodes),
                 "n_random": n_random}
            )

        random_units = random_unit_directions(seed, persona, hidden, n_random_directions)
        for alpha in alphas:
            vec = alpha * scale * unit
            record("direction", alpha, 0, run(add_vector(model, layer, vec, **kw)))
            record("salient_direction", alpha, 0,
                   run(add_vector(model, layer, vec * mask, **kw)))
            for k in range(n_random_directions):
                rvec = alpha * scale * random_units[k]
                record("random_direction", alpha, k, run(add_vector(model, layer, rvec, **kw)))
        meta_personas[persona] = {
            "heldout_ids": ids.tolist(),
            "train_ids": train["id"].astype(str).tolist(),
            "n_salient": len(nodes),
            "direction_norm": norm,
            "scale": scale,
            "salient_norm_fraction": float(np.linalg.norm(unit * mask)),
            "reused_prefix": bool(reuse and held_b.reused),
            "seconds": round(time.perf_counter() - t0, 2),
        }
    bar.close()

    steering = pd.DataFrame(steer_rows)
    meta = {
        "created": now_iso(),
        "model": model_info(model),
        "layer": layer,
        "n_blocks": where["n_blocks"],
        "hidden_size": hidden,
        "layer_convention": where["layer_convention"],
        "positions": positions,
        "personas": personas,
        "alphas": alphas,
        "n_heldout_per_direction": n_heldout,
        "n_train_per_direction": n_train,
        "n_random": n_random,
        "n_random_directions": n_random_directions,
        "n_boot": n_boot,
        "ci": ci,
        "seed": seed,
        "batch_size": batch_size,
        "n_excluded_ids": len(exclude_ids),
        "answer_tokens": tokens,
        "prompt_example": example,
        "ablation_values": "mean over the persona's training negative statements, last token, at the layer",
        "steering_scale": "alpha x mean norm of the training activations at the layer (last token)",
        "per_persona": meta_personas,
        "versions": package_versions(),
    }
    return CausalResult(
        baseline=pd.DataFrame(base_rows),
        margins=pd.concat(margin_rows, ignore_index=True),
        steering=steering,
        dose_response=_dose_response(steering, ci),
        ablation=pd.DataFrame(ablation_rows),
        random_ablation=pd.DataFrame(
            random_rows,
            columns=["persona", "draw", "n_nodes", "n_salient_drawn", "bias_shift", "specific_effect",
                     "mean_abs_shift", "accuracy"],
        ),
        meta=meta,
    )


def _dose_response(steering: pd.DataFrame, ci: float) -> pd.DataFrame:
    """Steering statistics per persona, intervention and alpha (the baseline as alpha 0 of each)."""
    lo, hi = (1 - ci) / 2, 1 - (1 - ci) / 2
    steer = steering[steering["intervention"].isin(["direction", "salient_direction", "random_direction"])]
    base = steering[steering["intervention"] == "baseline"]
    zeros = [
        base[base["persona"] == persona].assign(intervention=intervention)
        for persona, intervention in steer[["persona", "intervention"]].drop_duplicates().itertuples(index=False)
    ]
    rows = []
    for (persona, intervention, alpha), group in pd.concat([steer, *zeros]).groupby(
        ["persona", "intervention", "alpha"], sort=False
    ):
        row = {"persona": persona, "intervention": intervention, "alpha": float(alpha), "n_draws": len(group)}
        for s in _STATS:
            row[s] = float(group[s].mean())
            if len(group) == 1:
                row[f"{s}_low"], row[f"{s}_high"] = float(group[f"{s}_low"].iloc[0]), float(group[f"{s}_high"].iloc[0])
            else:  # spread of the statistic across random draws
                row[f"{s}_low"], row[f"{s}_high"] = (float(x) for x in np.quantile(group[s], [lo, hi]))
        row["interval"] = "bootstrap" if len(group) == 1 else "across draws"
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.sort_values(["persona", "intervention", "alpha"], kind="stable").reset_index(drop=True)



