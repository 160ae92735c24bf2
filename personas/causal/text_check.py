"""The causal check's steered-text phase: what the persona direction makes the model say.

For each checked persona, texts are generated from ``text_prompts`` at ``-text_alpha``, 0 and
``+text_alpha`` along the persona direction (the unit direction and scale of the readouts'
steering arm at the check's layer) and along ``n_text_random`` random directions of the same
norm (the readouts' random directions: same seed and persona), then scored offline:

- the **persona scorer** (:func:`personas.causal.text_scores.persona_scorer`), fitted on the check's
  training statements and gated by its AUC on ``n_text_gate`` statements per direction that are
  in neither the check's held-out nor training statements nor DeepScan's pools; fewer left: the
  scorer is marked uninformative (the gate table says so);
- optionally the model's own **agreement** (``n_text_agreement`` held-out statements per direction
  as continuations; the same gate statements);
- **coherence** (:mod:`personas.causal.coherence`): the unsteered model's NLL, distinct-2, zlib ratio.

Tables (:mod:`personas.causal.text_tables`): every text and its scores; per metric the mean shift
over prompts (alpha minus 0) with a bootstrap interval over prompts; the persona direction
against the random directions (the readouts' rule); the alpha sweep along the direction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from personas._core.provenance import derive_rng
from personas.causal.arms import Geometry, Site
from personas.causal.settings import CausalSettings
from personas.causal.text_arm import score_text_frame, steered_text_arm
from personas.causal.text_scores import TextScorer, agreement_scorer, persona_scorer
from personas.causal.text_tables import text_comparisons, text_shifts, text_sweep
from personas.model.generation import Placement
from personas.model.readouts import no_lm_head_reason

__all__ = ["TextPersona", "SteeredText", "TEXT_TABLES", "gate_statements", "steered_text_check"]

#: ``CausalResult`` table name -> ``SteeredText`` attribute.
TEXT_TABLES = {"steered_text": "texts", "text_gate": "gate", "text_effects": "effects",
               "text_comparisons": "comparisons", "text_sweep": "sweep"}
TEXT_COLUMNS = ["part", "persona", "prompt_index", "prompt", "mode", "layer", "positions", "arm", "draw", "alpha",
                "scale", "text", "n_tokens", "finished", "persona_score", "agreement_score", "nll", "distinct_2",
                "zlib_ratio"]


@dataclass(frozen=True)
class TextPersona:
    """One checked persona as the text arm needs it: its geometry at the check's layer and the ids of
    the check's held-out and training statements."""

    persona: str
    geometry: Geometry
    heldout_ids: tuple[str, ...]
    train_ids: tuple[str, ...]


@dataclass(frozen=True)
class SteeredText:
    """The steered-text phase's tables (``CausalResult`` names in :data:`TEXT_TABLES`) and its facts.

    Attributes
    ----------
    texts : DataFrame
        One row per part, persona, prompt, arm, draw and alpha (``TEXT_COLUMNS``): ``part`` is
        ``"arm"`` (the arm at ``-text_alpha``, 0, ``+text_alpha``) or ``"sweep"`` (the alpha sweep,
        persona direction only). The unsteered text of a prompt is repeated for every arm and draw.
    gate : DataFrame
        ``persona, scorer, n_positive, n_negative, auc, auc_low, auc_high, informative, note``.
    effects : DataFrame
        Mean shifts over prompts (:func:`personas.causal.text_tables.text_shifts`).
    comparisons : DataFrame
        The direction against the random directions, per gated scorer (``text_comparisons``).
    sweep : DataFrame
        Means per alpha of the sweep (``text_sweep``).
    meta : dict
        Prompts, alphas, sizes, the scorers' statements, the number of texts.
    """

    texts: pd.DataFrame
    gate: pd.DataFrame
    effects: pd.DataFrame
    comparisons: pd.DataFrame
    sweep: pd.DataFrame
    meta: dict

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, attr) for name, attr in TEXT_TABLES.items()}


def gate_statements(statements: pd.DataFrame, persona: str, used_ids, n: int, seed: int) -> tuple[pd.DataFrame, str]:
    """Up to ``n`` statements per direction of ``persona`` whose ids are not in ``used_ids`` (seeded draw),
    and a note ("" when ``n`` of each were left)."""
    rows = statements[(statements["persona"] == persona) & ~statements["id"].astype(str).isin(set(used_ids))]
    parts, counts = [], {}
    for direction in ("positive", "negative"):
        side = rows[rows["direction"] == direction]
        counts[direction] = len(side)
        rng = derive_rng(seed, persona, direction, "text_gate")
        parts.append(side.iloc[np.sort(rng.choice(len(side), size=min(n, len(side)), replace=False))])
    note = ""
    if min(counts.values()) < n:
        note = (f"only {counts['positive']} + and {counts['negative']} - statements of {persona} are in neither the "
                f"check's held-out nor training statements nor DeepScan's pools, fewer than n_text_gate={n}: the "
                "scorer is marked uninformative (load more statements or lower n_text_gate)")
    return pd.concat(parts), note


def _gate_row(persona: str, name: str, scorer: TextScorer | None, note: str) -> dict:
    g = scorer.gate if scorer is not None else None
    return {"persona": persona, "scorer": name, "n_positive": g.n_positive if g else 0,
            "n_negative": g.n_negative if g else 0, "auc": g.auc if g else np.nan,
            "auc_low": g.auc_low if g else np.nan, "auc_high": g.auc_high if g else np.nan,
            "informative": bool(g.informative) if g else False, "note": note}


def _scorers(model, tokenizer, statements, tp: TextPersona, settings: CausalSettings, seed: int,
             exclude) -> tuple[dict[str, TextScorer], list[dict], dict]:
    """The persona scorer (and the agreement scorer when asked), their gate rows, the ids they read."""
    by_id = statements.assign(_id=statements["id"].astype(str)).set_index("_id")
    train, heldout = by_id.loc[list(tp.train_ids)], by_id.loc[list(tp.heldout_ids)]
    gate, note = gate_statements(statements[statements["persona"] == tp.persona], tp.persona,
                                 set(tp.heldout_ids) | set(tp.train_ids) | set(exclude), settings.n_text_gate, seed)
    enough = min((gate["direction"] == d).sum() for d in ("positive", "negative")) >= 2
    note = note or ("" if enough else "fewer than 2 statements per direction left to gate the scorer")
    common = dict(seed=seed, n_boot=settings.n_boot, ci=settings.ci)
    scorers = {}
    if enough:
        scorers["persona_score"] = persona_scorer(train, gate, **common)
        if settings.n_text_agreement:
            conts = heldout.groupby("direction", sort=False).head(settings.n_text_agreement)
            scorers["agreement_score"] = agreement_scorer(model, tokenizer, conts, gate, batch_size=settings.batch_size,
                                                          **common)
    if note:  # too few gate statements: whatever the AUC, no conclusion
        scorers = {k: replace(s, gate=replace(s.gate, informative=False)) for k, s in scorers.items()}
    names = ["persona_score"] + (["agreement_score"] if settings.n_text_agreement else [])
    rows = [_gate_row(tp.persona, name, scorers.get(name), note) for name in names]
    ids = {"gate_ids": gate["id"].astype(str).tolist()}
    return scorers, rows, ids


def _scored(model, tokenizer, frame: pd.DataFrame, scorers: dict, persona: str, settings: CausalSettings,
            part: str) -> pd.DataFrame:
    """``frame`` with the scorers' columns renamed to ``TEXT_COLUMNS`` and the coherence metrics."""
    scored = score_text_frame(frame, list(scorers.values()), model=model, tokenizer=tokenizer,
                              batch_size=settings.batch_size)
    scored = scored.rename(columns={f"score:{s.name}": k for k, s in scorers.items()}).assign(persona=persona,
                                                                                             part=part)
    for column in TEXT_COLUMNS:
        if column not in scored:
            scored[column] = np.nan
    return scored[TEXT_COLUMNS]


def _generate(model, tokenizer, tp: TextPersona, site: Site, settings: CausalSettings, seed: int, alphas,
              n_random: int, prompts, max_new_tokens: int) -> pd.DataFrame:
    geom = tp.geometry
    place = Placement(site.layer, site.blocks_path, site.final_norm)
    return steered_text_arm(model, tokenizer, geom.unit, geom.scale, place, alphas, n_random=n_random,
                            key=(seed, tp.persona), prompts=prompts, positions=settings.text_positions,
                            max_new_tokens=max_new_tokens, batch_size=settings.text_batch_size)


def _decoded(texts: pd.DataFrame) -> dict:
    """How many texts were decoded and tokens generated (an unsteered text once per prompt)."""
    once = pd.concat([texts[texts["alpha"] != 0],
                      texts[texts["alpha"] == 0].drop_duplicates(["part", "persona", "prompt_index"])])
    return {"n_texts": int(len(once)), "n_generated_tokens": int(once["n_tokens"].sum()) if len(once) else 0}


def steered_text_check(model, tokenizer, statements: pd.DataFrame, personas: Sequence[TextPersona], site: Site,
                       settings: CausalSettings, seed: int, exclude=(), *, progress: bool = True) -> SteeredText:
    """Generate, score and summarise the steered texts of each persona (module docstring).

    Parameters
    ----------
    model, tokenizer :
        The causal LM of the check (no intervention active) and its tokenizer.
    statements : DataFrame
        ``id, persona, direction, statement``: the check's statements (the scorers' gates draw from them).
    personas : sequence of TextPersona
    site : Site
        The check's layer and where its blocks and final norm are.
    settings : CausalSettings
        ``text_*``, ``n_text_*``, ``n_boot``, ``ci``, ``batch_size`` (scoring).
    seed : int
        The check's seed: random directions (``(seed, persona)``), gate draws, bootstraps, scorers.
    exclude : iterable of str
        Ids in DeepScan's pools (never gate statements).

    Returns
    -------
    SteeredText
        Empty tables, and ``meta["not_applicable"]`` saying why, for a model without a language-model head.
    """
    a, prompts = settings.text_alpha, list(settings.text_prompts)
    why = no_lm_head_reason(model)
    if why is not None:  # an encoder: nothing to generate with
        why += "; it generates no text"
        empty = pd.DataFrame()
        return SteeredText(pd.DataFrame(columns=TEXT_COLUMNS), empty, empty, empty, empty,
                           {"alpha": a, "prompts": prompts, "not_applicable": why})
    frames, gates, ids = [], [], {}
    for tp in tqdm(personas, desc="steered text", unit="persona", disable=not progress, leave=False):
        scorers, rows, ids[tp.persona] = _scorers(model, tokenizer, statements, tp, settings, seed, exclude)
        gates += rows
        frame = _generate(model, tokenizer, tp, site, settings, seed, [-a, a], settings.n_text_random, prompts,
                          settings.text_max_new_tokens)
        frames.append(_scored(model, tokenizer, frame, scorers, tp.persona, settings, "arm"))
        if settings.text_sweep_alphas:
            frame = _generate(model, tokenizer, tp, site, settings, seed, settings.text_sweep_alphas, 0,
                              prompts[: settings.n_text_sweep_prompts], settings.text_sweep_max_new_tokens)
            frames.append(_scored(model, tokenizer, frame, scorers, tp.persona, settings, "sweep"))
    texts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TEXT_COLUMNS)
    gate = pd.DataFrame(gates)
    effects = text_shifts(texts[texts["part"] == "arm"], n_boot=settings.n_boot, ci=settings.ci, seed=seed)
    sweep = text_sweep(texts[texts["part"] == "sweep"])
    meta = {"alpha": a, "prompts": prompts, "n_random": settings.n_text_random, "layer": site.layer,
            "positions": settings.text_positions, "max_new_tokens": settings.text_max_new_tokens,
            "sweep_alphas": list(settings.text_sweep_alphas), "n_sweep_prompts": settings.n_text_sweep_prompts,
            "sweep_max_new_tokens": settings.text_sweep_max_new_tokens,
            **_decoded(texts),
            "scorer_statements": ids, "decoding": "greedy", "persona_scorer": "logistic regression on "
            "all-MiniLM-L6-v2 embeddings of the check's training statements (log-odds of reading like the + ones)"}
    return SteeredText(texts, gate, effects, text_comparisons(effects, gate), sweep, meta)
