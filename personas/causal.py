"""Do the salient nodes matter? A causal check on the model's own Yes/No answers.

For each persona, on *held-out* statements (used neither for the persona direction
nor for DeepScan's pools), the model answers "Is the following statement something
you would say?" (:mod:`personas.answers`); the margin ``log p(Yes) - log p(No)`` is
measured without and with interventions at one layer (:mod:`personas.interventions`):

- ``salient_ablation``: the persona's salient nodes set to their mean over the
  background (the persona's training ``-`` statements, the side DeepScan's level-2
  background is drawn from), against ``random_ablation``: as many random nodes, many draws;
- ``direction``: ``alpha * s * u`` added, ``u`` the unit persona direction (mean of
  ``+`` minus mean of ``-`` training activations at the layer, last token) and ``s``
  the mean norm of those activations, for a grid of ``alpha`` of both signs;
  ``salient_direction``: the same vector with only its salient-node components;
  ``random_direction``: random unit directions times ``alpha * s`` (the same norm).

Every statement's *shift* is its margin under the intervention minus its baseline
margin. Per persona and intervention: the general Yes-bias shift (``bias_shift``,
mean shift over all statements) and the persona-specific effect
(``specific_effect``: mean shift of ``positive`` statements, whose matching answer is
Yes, minus that of ``negative`` ones, whose matching answer is No), each with a
stratified bootstrap interval; accuracy = fraction answered as the persona would.
Activations for the direction and the ablation values are read at the last token
of the same answer prompts; interventions apply at every position (or the last).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from personas.answers import ANSWER_RULES, answer_tokens, prepare_answers
from personas.checks import check_bool, check_choice, check_float, check_int, check_seed
from personas.hooks import layer_info, resolve_layers
from personas.interventions import POSITIONS, ablate_nodes, add_vector, check_nodes
from personas.io import write_json, write_table
from personas.provenance import derive_rng, now_iso, package_versions

__all__ = [
    "DEFAULT_ALPHAS",
    "INTERVENTIONS",
    "ABLATION_METRICS",
    "CausalResult",
    "split_statements",
    "random_node_draws",
    "random_unit_directions",
    "shift_summary",
    "empirical_test",
    "causal_check",
    "save_causal_result",
    "load_causal_result",
    "causal_summary_markdown",
]

DEFAULT_ALPHAS = (-0.5, -0.25, -0.1, 0.1, 0.25, 0.5)
INTERVENTIONS = (
    "baseline",
    "salient_ablation",
    "random_ablation",
    "direction",
    "salient_direction",
    "random_direction",
)
# metric -> alternative of its test against the random-node draws
ABLATION_METRICS = {"specific_effect": "two-sided", "bias_shift": "two-sided", "mean_abs_shift": "greater"}
_STATS = ("mean_margin", "mean_margin_positive", "mean_margin_negative", "accuracy", "bias_shift",
          "specific_effect", "mean_abs_shift")


@dataclass
class CausalResult:
    """Tables of one causal check (tidy, one row per observation) and its metadata.

    Attributes
    ----------
    baseline : DataFrame
        Per persona: ``n_heldout``, ``mean_margin``, ``mean_margin_positive``,
        ``mean_margin_negative``, ``accuracy``, ``auc`` (ROC AUC of the margin against
        ``direction == "positive"``), ``n_salient``, ``direction_norm``, ``scale``.
    margins : DataFrame
        Every margin measured: ``persona, intervention, alpha, draw, id, direction, margin, shift``.
    steering : DataFrame
        Per persona, intervention, alpha and draw: the statistics of ``shift_summary``
        with bootstrap intervals (``*_low``, ``*_high``); includes the ablations (alpha NaN).
    dose_response : DataFrame
        Per persona, steering intervention and alpha (0 = baseline): the statistics
        averaged over draws; intervals are bootstrap (one draw) or the central
        ``ci`` range across draws (``random_direction``), as ``interval`` says.
    ablation : DataFrame
        Per persona and metric: the salient-node value (with bootstrap interval), the
        random-node mean and std, the salient value's percentile among the draws and
        the empirical p-value.
    random_ablation : DataFrame
        Per persona and draw: the metrics of each random-node ablation (the histogram)
        and ``n_salient_drawn``, how many of its nodes are salient.
    meta : dict
        Parameters, model, answer tokens, statement ids, seeds, timings, versions.
    """

    baseline: pd.DataFrame
    margins: pd.DataFrame
    steering: pd.DataFrame
    dose_response: pd.DataFrame
    ablation: pd.DataFrame
    random_ablation: pd.DataFrame
    meta: dict = field(default_factory=dict)

    TABLES = ("baseline", "margins", "steering", "dose_response", "ablation", "random_ablation")

    def tables(self) -> dict[str, pd.DataFrame]:
        """``{name: DataFrame}`` of every table."""
        return {name: getattr(self, name) for name in self.TABLES}


# ------------------------------------------------------------------ statements


def split_statements(
    statements: pd.DataFrame,
    persona: str,
    *,
    n_heldout: int,
    n_train: int | None,
    exclude_ids: Iterable[str] = (),
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held-out and training statements of one persona, balanced by direction, seeded.

    Held-out statements (``n_heldout`` per direction) are drawn from those whose id
    is not in ``exclude_ids`` (DeepScan's pools); training statements (``n_train`` per
    direction, None for all) from the rest, which may include excluded ids. The draw
    depends only on ``seed``, the persona's name and the direction.

    Returns
    -------
    (heldout, train) : DataFrames, rows of ``statements`` (positive first).
    """
    rows = statements[statements["persona"] == persona]
    if rows.empty:
        raise ValueError(f"no statements of persona {persona!r}; pass statements holding its rows")
    excluded = set(map(str, exclude_ids))
    heldout, train = [], []
    for direction in ("positive", "negative"):
        side = rows[rows["direction"] == direction]
        free = side[~side["id"].astype(str).isin(excluded)]
        if len(free) < n_heldout:
            raise ValueError(
                f"persona {persona!r} has {len(free)} {direction} statements outside exclude_ids, fewer than "
                f"n_heldout={n_heldout}; lower n_heldout or load more statements (load_statements(..., "
                "n_per_direction=None))"
            )
        rng = derive_rng(seed, persona, direction, "heldout")
        pick = np.sort(rng.choice(len(free), size=n_heldout, replace=False))
        held = free.iloc[pick]
        rest = side[~side.index.isin(held.index)]
        n = len(rest) if n_train is None else n_train
        if len(rest) < max(n, 1):
            raise ValueError(
                f"persona {persona!r} has {len(rest)} {direction} statements left for training after the held-out "
                f"draw, fewer than n_train={n_train}; lower n_train or n_heldout"
            )
        rng = derive_rng(seed, persona, direction, "train")
        train.append(rest.iloc[np.sort(rng.choice(len(rest), size=n, replace=False))])
        heldout.append(held)
    return pd.concat(heldout), pd.concat(train)


def random_node_draws(seed: int, persona: str, hidden_size: int, size: int, n: int) -> np.ndarray:
    """The random-node control sets of ``causal_check``: ``(n, size)`` unit indices, each row without repeats.

    Drawn uniformly from all ``hidden_size`` units (salient ones included), seeded by
    ``seed`` and the persona's name.
    """
    rng = derive_rng(seed, persona, "random_nodes")
    out = np.empty((n, size), dtype=np.int64)
    for k in range(n):
        out[k] = rng.choice(hidden_size, size=size, replace=False)
    return out


def random_unit_directions(seed: int, persona: str, hidden_size: int, n: int) -> np.ndarray:
    """The random steering directions of ``causal_check``: ``(n, hidden_size)`` unit vectors (isotropic Gaussian)."""
    rng = derive_rng(seed, persona, "random_directions")
    units = rng.standard_normal((n, hidden_size))
    return units / np.linalg.norm(units, axis=1, keepdims=True)


# ------------------------------------------------------------------ statistics


def _bootstrap_index(positive: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    # resampled within each direction: every replicate keeps the balance of the sample
    return pos[rng.integers(0, len(pos), (n_boot, len(pos)))], neg[rng.integers(0, len(neg), (n_boot, len(neg)))]


def _stats(margin: np.ndarray, base: np.ndarray, pos_idx: np.ndarray, neg_idx: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics over the statement indices ``pos_idx``/``neg_idx`` (``(..., n_pos)``, ``(..., n_neg)``)."""
    shift = margin - base
    mp, mn = margin[pos_idx], margin[neg_idx]
    sp, sn = shift[pos_idx], shift[neg_idx]
    n = pos_idx.shape[-1] + neg_idx.shape[-1]
    return {
        "mean_margin": (mp.sum(-1) + mn.sum(-1)) / n,
        "mean_margin_positive": mp.mean(-1),
        "mean_margin_negative": mn.mean(-1),
        "accuracy": ((mp > 0).sum(-1) + (mn < 0).sum(-1)) / n,
        "bias_shift": (sp.sum(-1) + sn.sum(-1)) / n,
        "specific_effect": sp.mean(-1) - sn.mean(-1),
        "mean_abs_shift": (np.abs(sp).sum(-1) + np.abs(sn).sum(-1)) / n,
    }


def shift_summary(
    margin: np.ndarray,
    base: np.ndarray,
    positive: np.ndarray,
    boot: tuple[np.ndarray, np.ndarray] | None = None,
    ci: float = 0.95,
) -> dict[str, float]:
    """Statistics of one intervention's margins against the baseline margins.

    Parameters
    ----------
    margin, base : ndarray ``(n,)``
        Margins with and without the intervention.
    positive : bool ndarray ``(n,)``
        True for ``positive`` statements (matching answer Yes).
    boot : (ndarray ``(n_boot, n_pos)``, ndarray ``(n_boot, n_neg)``), optional
        Bootstrap statement indices; adds ``<stat>_low`` / ``<stat>_high``.
    ci : float
        Coverage of the percentile intervals.

    Returns
    -------
    dict
        ``mean_margin``, ``mean_margin_positive``, ``mean_margin_negative``,
        ``accuracy`` (answered as the persona would: Yes for positive, No for
        negative), ``bias_shift`` (mean shift), ``specific_effect`` (mean shift of
        positive minus negative statements), ``mean_abs_shift``.
    """
    positive = np.asarray(positive, dtype=bool)
    out = {k: float(v) for k, v in _stats(margin, base, np.flatnonzero(positive), np.flatnonzero(~positive)).items()}
    if boot is not None:
        reps = _stats(margin, base, *boot)
        lo, hi = (1 - ci) / 2, 1 - (1 - ci) / 2
        for k, v in reps.items():
            out[f"{k}_low"], out[f"{k}_high"] = (float(x) for x in np.quantile(v, [lo, hi]))
    return out


def empirical_test(value: float, null: np.ndarray, alternative: str = "two-sided") -> tuple[float, float]:
    """Percentile of ``value`` among the ``null`` draws and its empirical p-value.

    Percentile = 100 x (fraction of draws below ``value`` + half the ties). p-value
    with the usual +1 correction: ``(1 + #{null >= value}) / (K + 1)`` for
    ``"greater"``, the mirror for ``"less"``, twice the smaller tail (at most 1) for
    ``"two-sided"``.
    """
    check_choice(alternative, "alternative", ("two-sided", "greater", "less"))
    null = np.asarray(null, dtype=float)
    k = len(null)
    if k == 0:
        return float("nan"), float("nan")
    percentile = 100.0 * ((null < value).mean() + 0.5 * (null == value).mean())
    greater = (1 + (null >= value).sum()) / (k + 1)
    less = (1 + (null <= value).sum()) / (k + 1)
    p = {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]
    return float(percentile), float(p)


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
        Which tokens count as Yes/No (``personas.answers.answer_tokens``).
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

    from personas.models import model_info

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


# ------------------------------------------------------------------ writing and reporting


def save_causal_result(result: CausalResult, out_dir: str | os.PathLike, prefix: str = "causal") -> dict[str, Path]:
    """Write every table as ``<prefix>_<table>.csv`` and ``<prefix>_check.json`` (metadata), atomically.

    Returns
    -------
    dict
        ``{table name: path}``, plus ``"meta"``.
    """
    out = Path(out_dir)
    written = {name: write_table(df, out / f"{prefix}_{name}.csv") for name, df in result.tables().items()}
    meta = dict(result.meta, tables={name: path.name for name, path in written.items()})
    written["meta"] = write_json(out / f"{prefix}_check.json", meta)
    return written


def load_causal_result(out_dir: str | os.PathLike, prefix: str = "causal") -> CausalResult:
    """Read back what :func:`save_causal_result` wrote (e.g. to build the report from artifacts)."""
    from personas.io import read_json

    out = Path(out_dir)
    meta_path = out / f"{prefix}_check.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} does not exist; run causal_check and save_causal_result first")
    meta = read_json(meta_path)
    tables = {name: pd.read_csv(out / file) for name, file in meta.pop("tables").items()}
    missing = [t for t in CausalResult.TABLES if t not in tables]
    if missing:
        raise ValueError(f"{meta_path} lists no tables {missing}; rewrite the result with save_causal_result")
    return CausalResult(**{t: tables[t] for t in CausalResult.TABLES}, meta=meta)


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.{digits}f}"


def causal_summary_markdown(result: CausalResult, heading: str = "## Do the salient nodes matter?") -> str:
    """A report section: what was done, the numbers per persona, what the check can and cannot show."""
    from personas.report import markdown_table

    meta = result.meta
    model = (meta.get("model") or {}).get("model", "the model")
    lines = [
        heading,
        "",
        f"Model `{model}`, layer {meta.get('layer')} of {meta.get('n_blocks')} (interventions at "
        f"{'every token position' if meta.get('positions') == 'all' else 'the last token'}), "
        f"{meta.get('n_heldout_per_direction')} held-out statements per direction and persona (used neither for "
        "the direction nor for DeepScan's pools). The model answers each statement's question "
        "(\"Is the following statement something you would say?\" + \"Answer Yes or No.\"); the margin is "
        "log p(Yes) - log p(No) at the first answer token "
        f"(Yes tokens {meta.get('answer_tokens', {}).get('yes_tokens')}, No tokens "
        f"{meta.get('answer_tokens', {}).get('no_tokens')}). A shift is a margin under an intervention minus "
        "the baseline margin; the *bias shift* is its mean over all statements (more Yes overall), the "
        "*persona-specific effect* the mean shift of `+` statements minus that of `-` statements (more "
        f"agreement with the persona). Intervals: {int(round(100 * meta.get('ci', 0.95)))}% bootstrap over "
        "statements.",
        "",
        "Baseline answers:",
        "",
        markdown_table(
            result.baseline[["persona", "n_heldout", "mean_margin_positive", "mean_margin_negative", "accuracy",
                             "auc", "n_salient"]]
        ),
        "",
    ]
    abl = result.ablation[result.ablation["metric"] == "specific_effect"]
    if len(abl):
        lines += [
            f"Ablating the salient nodes (set to their background mean) against {meta.get('n_random')} draws of "
            "as many random nodes; persona-specific effect of the ablation, its percentile among the random "
            "draws and the two-sided empirical p-value:",
            "",
            markdown_table(
                pd.DataFrame(
                    {
                        "persona": abl["persona"],
                        "n_nodes": abl["n_nodes"],
                        "salient": [f"{_fmt(v)} [{_fmt(a)}, {_fmt(b)}]" for v, a, b in
                                    zip(abl["salient"], abl["salient_low"], abl["salient_high"])],
                        "random mean ± std": [f"{_fmt(m)} ± {s:.2f}" if np.isfinite(s) else _fmt(m)
                                              for m, s in zip(abl["random_mean"], abl["random_std"])],
                        "percentile": abl["percentile"],
                        "p": abl["p_value"],
                    }
                )
            ),
            "",
        ]
    dose = result.dose_response
    if len(dose):
        extreme = [a for a in (min(meta["alphas"]), max(meta["alphas"]))]
        rows = []
        for persona in meta["personas"]:
            for alpha in dict.fromkeys(extreme):
                sel = dose[(dose["persona"] == persona) & (dose["alpha"] == alpha)].set_index("intervention")
                if "direction" not in sel.index:
                    continue
                d = sel.loc["direction"]
                row = {
                    "persona": persona,
                    "alpha": alpha,
                    "bias shift": f"{_fmt(d['bias_shift'])} [{_fmt(d['bias_shift_low'])}, "
                    f"{_fmt(d['bias_shift_high'])}]",
                    "specific effect": f"{_fmt(d['specific_effect'])} [{_fmt(d['specific_effect_low'])}, "
                    f"{_fmt(d['specific_effect_high'])}]",
                    "accuracy": d["accuracy"],
                }
                for name, label in (("salient_direction", "salient-only specific"),
                                    ("random_direction", "random-direction specific")):
                    if name in sel.index:
                        r = sel.loc[name]
                        row[label] = f"{_fmt(r['specific_effect'])} [{_fmt(r['specific_effect_low'])}, " \
                                     f"{_fmt(r['specific_effect_high'])}]"
                rows.append(row)
        lines += [
            "Steering along the persona direction (alpha x mean activation norm), at the extreme alphas; the "
            "salient-only row keeps the direction's components on the salient nodes; random directions have "
            "the same norm (interval across draws):",
            "",
            markdown_table(pd.DataFrame(rows)),
            "",
        ]
    lines += [
        "What this can show: whether, *in this model*, the units DeepScan flags carry the persona-dependent "
        "part of its own answers more than random units of the same number do, and whether the persona "
        "direction moves agreement with the persona (specific effect) or only the overall tendency to say "
        "Yes (bias shift). What it cannot show: anything about another model. The model here is small "
        "(SmolLM2-135M-Instruct by default), its answers agree with the personas only weakly, and an effect, "
        "or its absence, is a property of this model, layer and prompt, not of Llama-3-8B or the paper's "
        "models. Mean ablation and additive steering are two interventions among many; a null result does "
        "not show that the nodes carry no persona information (it may be redundant across units), and "
        "salient sets covering most units make the random control close to the salient set itself.",
        "",
    ]
    return "\n".join(lines)
