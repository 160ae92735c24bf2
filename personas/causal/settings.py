"""How the causal check runs, checked once: ``CausalSettings``.

The defaults are sized for the default study (a 135M model on 2 CPU cores, a few minutes for
2 personas): the first readout runs every arm, the others the gate and the main arms (the
persona direction and its random directions); the restricted direction at the positive
alphas; specificity at one strength; the dose response on the first persona only, on a subset
of its held-out statements; the steered-text arm on 8 neutral prompts x 3 alphas x (1 + 2 random)
directions x 20 tokens per persona, with a sweep of 6 alphas on 2 prompts (about 25 s of one CPU
thread per persona on SmolLM2-135M).
"""

from __future__ import annotations

from dataclasses import dataclass

from personas._core.checks import check_bool, check_choice, check_float, check_int, check_str
from personas.model.answers import ANSWER_RULES
from personas.model.extraction import ExtractionSettings
from personas.model.generation import GENERATION_POSITIONS, NEUTRAL_PROMPTS
from personas.model.interventions import EDIT_POSITIONS
from personas.model.readouts import NEUTRAL_PROMPT, READOUTS

__all__ = ["ARMS", "MAIN_ARMS", "CausalSettings"]

#: Every arm: interventions and their controls.
ARMS = ("direction", "random_direction", "salient_ablation", "random_ablation", "top_variance_ablation",
        "salient_direction", "random_restricted_direction")
#: The arms run on every informative readout (the others run on the first readout only).
MAIN_ARMS = ("direction", "random_direction")
#: Strengths of the dose response: finer near 0 (where the effect should grow linearly), then the extremes.
DOSE_ALPHAS = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0)
TEXT_SWEEP_ALPHAS = (-1.0, -0.5, -0.25, 0.25, 0.5, 1.0)


def _alphas(values, name: str, allow_zero: bool) -> tuple[float, ...]:
    try:
        out = tuple(sorted({check_float(a, f"{name} entry") for a in values}))
    except TypeError as exc:
        raise ValueError(f"{name} must be a sequence of numbers, e.g. (-0.25, 0.25); got {values!r}") from exc
    if not allow_zero:
        out = tuple(a for a in out if a != 0.0)
    if not out:
        raise ValueError(f"{name} must hold at least one non-zero value, e.g. (-0.25, 0.25); got {values!r}")
    return out


def _prompts(values) -> tuple[str, ...]:
    """The text arm's prompts: None for ``NEUTRAL_PROMPTS``, an int n for the first n of them, else at
    least 2 distinct non-empty strings."""
    if values is None:
        return NEUTRAL_PROMPTS
    if isinstance(values, int) and not isinstance(values, bool):
        return NEUTRAL_PROMPTS[: check_int(values, "text_prompts", min_val=2, max_val=len(NEUTRAL_PROMPTS))]
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ValueError(f"text_prompts must be a list of prompts, e.g. ['Tell me about yourself.', ...], a number "
                         f"of the default prompts (2 to {len(NEUTRAL_PROMPTS)}), or None for all of them; "
                         f"got {values!r}")
    out = tuple(check_str(v, "text_prompts entry") for v in values)
    if len(out) < 2 or len(set(out)) < len(out):
        raise ValueError(f"text_prompts must hold at least 2 distinct prompts (the intervals are bootstraps over "
                         f"prompts); got {list(out)!r}")
    return out


@dataclass(frozen=True)
class CausalSettings:
    """Settings of :func:`personas.causal.causal_check`.

    Attributes
    ----------
    readouts : tuple of str or callable
        ``"likelihood"``, ``"yes_no"`` (:mod:`personas.model.readouts`) or callables
        ``(model, tokenizer, statements) -> scores``. The first runs every arm (and the
        specificity matrix and the dose response); the others the gate and ``MAIN_ARMS``.
    likelihood_prompt : str
        The neutral user turn of the likelihood readout.
    rule : {"logsumexp", "first"}
        Which tokens count as Yes/No.
    n_heldout, n_train : int
        Held-out statements per direction (never in DeepScan's pools), and training
        statements per direction (the direction, the ablation values, the node variances).
    alphas : tuple of float
        Steering strengths of the main arms (x mean norm of the training hidden states).
    n_random_directions, n_random_nodes : int
        Random directions of the same norm (per alpha); random node sets (ablation draws and
        the restricted-direction control).
    edit_positions : {"all", "last"}
        Token positions an intervention edits.
    skip_uninformative : bool
        Run no intervention on a readout the gate marks uninformative.
    n_specificity : int
        Personas of the specificity matrix (the checked ones first); 0: none, else at least 2.
    specificity_alpha : float
    dose_alphas : tuple of float
        Strengths of the dose response (0 is the baseline).
    dose_layers : tuple of int or None
        Layers of the dose response; None: ``n_blocks // 4``, ``n_blocks // 2`` and the check's layer.
    n_dose_personas : int
        The dose response runs on the first this many checked personas (0: none).
    n_dose_random : int
        Random directions per alpha and layer in the dose response.
    n_dose_heldout : int or None
        Held-out statements per direction of the dose response (the first of the held-out
        draw); None: all ``n_heldout``.
    n_boot, ci : int, float
        Bootstrap replicates (statements resampled within each direction) and interval coverage.
    n_permutations : int
        Row permutations of the specificity test when k! is larger (else all are enumerated).
    batch_size : int
    reuse_prefix : bool
        Compute blocks ``1..layer`` once per batch and reuse them for every intervention (exact).
    extraction : ExtractionSettings
        How the training statements are read (the direction is read where extraction reads).
    steered_text : bool
        Run the steered-text arm (:mod:`personas.causal.text_check`): texts generated at
        ``-text_alpha``, 0 and ``+text_alpha`` along each checked persona's direction and along
        ``n_text_random`` random directions of the same norm, scored offline.
    text_prompts : tuple of str, int or None
        Neutral user turns (at least 2); None: ``NEUTRAL_PROMPTS`` (8); an int n: the first n of
        them. Kept as the tuple of prompts. The intervals are bootstraps over these prompts.
    text_alpha : float
        The strength of the text arm (> 0; x mean norm of the training hidden states, as ``alphas``).
    n_text_random : int
        Random directions of the same norm (those of the readouts' steering arms: same seed and persona).
    text_max_new_tokens : int
        Generated tokens per text at most (greedy decoding).
    text_positions : {"all", "prompt", "generated"}
        Positions the text arm edits (``personas.model.generation.GENERATION_POSITIONS``).
    n_text_gate : int
        Statements per direction gating the persona scorer: drawn from those in neither the
        check's held-out nor training statements nor DeepScan's pools. Fewer left: the scorer is
        marked uninformative.
    n_text_agreement : int
        Held-out statements per direction scored as continuations by the model's own agreement
        scorer (``agreement_scorer``); 0 (default): no agreement scorer (it costs a forward pass per
        text and statement).
    text_sweep_alphas : tuple of float
        The alpha sweep along the persona direction (where coherence collapses); () for none.
    n_text_sweep_prompts : int
        The sweep's prompts (the first of ``text_prompts``).
    text_sweep_max_new_tokens : int
    text_batch_size : int
        Texts decoded per batch (prompts x arms x alphas).
    """

    readouts: tuple = ("likelihood", "yes_no")
    likelihood_prompt: str = NEUTRAL_PROMPT
    rule: str = "logsumexp"
    n_heldout: int = 40
    n_train: int = 40
    alphas: tuple = (-0.25, 0.25)
    n_random_directions: int = 2
    n_random_nodes: int = 4
    edit_positions: str = "all"
    skip_uninformative: bool = True
    n_specificity: int = 4
    specificity_alpha: float = 0.25
    dose_alphas: tuple = DOSE_ALPHAS
    dose_layers: tuple | None = None
    n_dose_personas: int = 1
    n_dose_random: int = 2
    n_dose_heldout: int | None = 10
    n_boot: int = 1000
    ci: float = 0.95
    n_permutations: int = 2000
    batch_size: int = 16
    reuse_prefix: bool = True
    extraction: ExtractionSettings = ExtractionSettings()
    steered_text: bool = True
    text_prompts: tuple | int | None = NEUTRAL_PROMPTS
    text_alpha: float = 0.25
    n_text_random: int = 2
    text_max_new_tokens: int = 20
    text_positions: str = "all"
    n_text_gate: int = 20
    n_text_agreement: int = 0
    text_sweep_alphas: tuple = TEXT_SWEEP_ALPHAS
    n_text_sweep_prompts: int = 2
    text_sweep_max_new_tokens: int = 16
    text_batch_size: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.readouts, (str, bytes)) or callable(self.readouts):
            raise ValueError(f"readouts must be a tuple, e.g. ('likelihood',); got {self.readouts!r}")
        readouts = tuple(self.readouts)
        if not readouts:
            raise ValueError("readouts must name at least one readout, e.g. ('likelihood', 'yes_no')")
        for r in readouts:
            if not callable(r) and r not in READOUTS:
                raise ValueError(f"unknown readout {r!r}; choose from {sorted(READOUTS)} or pass a callable "
                                 "(model, tokenizer, statements) -> scores")
        object.__setattr__(self, "readouts", readouts)
        check_str(self.likelihood_prompt, "likelihood_prompt")
        check_choice(self.rule, "rule", ANSWER_RULES)
        check_int(self.n_heldout, "n_heldout", min_val=2)
        check_int(self.n_train, "n_train", min_val=1)
        object.__setattr__(self, "alphas", _alphas(self.alphas, "alphas", allow_zero=False))
        object.__setattr__(self, "dose_alphas", _alphas(self.dose_alphas, "dose_alphas", allow_zero=True))
        for name in ("n_random_directions", "n_random_nodes", "n_dose_personas", "n_dose_random"):
            check_int(getattr(self, name), name, min_val=0)
        check_choice(self.edit_positions, "edit_positions", EDIT_POSITIONS)
        check_bool(self.skip_uninformative, "skip_uninformative")
        check_int(self.n_specificity, "n_specificity", min_val=0)
        if self.n_specificity == 1:
            raise ValueError("n_specificity must be 0 (no specificity matrix) or at least 2; got 1")
        check_float(self.specificity_alpha, "specificity_alpha")
        if self.specificity_alpha == 0:
            raise ValueError("specificity_alpha must be non-zero, e.g. 0.25")
        if self.n_dose_heldout is not None:
            check_int(self.n_dose_heldout, "n_dose_heldout", min_val=2)
        if self.dose_layers is not None:
            object.__setattr__(self, "dose_layers", tuple(check_int(x, "dose_layers entry", min_val=0)
                                                          for x in self.dose_layers))
        check_int(self.n_boot, "n_boot", min_val=1)
        check_float(self.ci, "ci", min_val=0.0, max_val=1.0, include_min=False, include_max=False)
        check_int(self.n_permutations, "n_permutations", min_val=1)
        check_int(self.batch_size, "batch_size", min_val=1)
        check_bool(self.reuse_prefix, "reuse_prefix")
        if not isinstance(self.extraction, ExtractionSettings):
            raise TypeError(f"extraction must be an ExtractionSettings; got {type(self.extraction).__name__}")
        self._check_text()

    def _check_text(self) -> None:
        check_bool(self.steered_text, "steered_text")
        object.__setattr__(self, "text_prompts", _prompts(self.text_prompts))
        check_float(self.text_alpha, "text_alpha", min_val=0.0, include_min=False)
        for name in ("n_text_random", "n_text_agreement"):
            check_int(getattr(self, name), name, min_val=0)
        for name in ("text_max_new_tokens", "text_sweep_max_new_tokens", "text_batch_size"):
            check_int(getattr(self, name), name, min_val=1)
        check_choice(self.text_positions, "text_positions", GENERATION_POSITIONS)
        check_int(self.n_text_gate, "n_text_gate", min_val=2)
        sweep = () if not self.text_sweep_alphas else _alphas(self.text_sweep_alphas, "text_sweep_alphas",
                                                              allow_zero=False)
        object.__setattr__(self, "text_sweep_alphas", sweep)
        check_int(self.n_text_sweep_prompts, "n_text_sweep_prompts", min_val=1,
                  max_val=len(self.text_prompts))

    def record(self) -> dict:
        """The settings as JSON-friendly values (callables by name)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extraction"}
        out["readouts"] = [r if isinstance(r, str) else getattr(r, "__name__", repr(r)) for r in self.readouts]
        out["extraction"] = dict(vars(self.extraction))
        return out
