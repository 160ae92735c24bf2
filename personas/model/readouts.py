"""Readouts: one score per statement from the model's own output, batched and padding-safe.

A readout is any callable ``(model, tokenizer, statements) -> ndarray (n_statements,)``.
Two are built in:

- ``yes_no_margin``: ``log p(Yes) - log p(No)`` at the first answer token of the question
  "Is the following statement something you would say?" (:mod:`personas.model.answers`);
- ``statement_likelihood``: the mean log-probability of the statement's tokens as the
  assistant's reply to a neutral user turn (``NEUTRAL_PROMPT``), rendered with the chat
  template when the tokenizer has one. No system message is passed (a template may add
  its own default one, as SmolLM2's does); the prompt is recorded by the caller.

Every prompt of a readout shares its first tokens (the chat header, the user turn). The
built-in readouts run those once per call (batch 1, with a KV cache) and only the rest of
each prompt per batch, left padded inside the batch with positions counted over real
tokens, so a score does not depend on the batch it sits in. Interventions of
:mod:`personas.model.interventions` active around a call apply to both parts::

    prepared = READOUTS["likelihood"]().prepare(tokenizer, statements)
    base = prepared.scores(model)
    with add_vector(model, layer=22, vector=v):
        steered = prepared.scores(model)
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from personas._core.checks import check_int, check_scores, check_str
from personas.model.answers import INSTRUCTION, QUESTION, answer_tokens
from personas.model.batching import accepts, pad_token_id
from personas.model.hooks import find_blocks, model_family
from personas.statements import statement_texts

__all__ = ["NEUTRAL_PROMPT", "RAW_FRAME", "READOUTS", "Readout", "YesNoMargin", "StatementLikelihood",
           "PreparedReadout", "yes_no_margin", "statement_likelihood", "resolve_readout", "prompt_mode",
           "no_lm_head_reason", "user_turn_ids"]

NEUTRAL_PROMPT = "Tell me one thing you believe."
#: How a user turn is framed for a model without a chat template (a base model): raw text.
RAW_FRAME = "Q: {prompt}\nA:"


def prompt_mode(tokenizer) -> str:
    """``"chat"`` when the tokenizer has a chat template, else ``"raw"`` (a base model: ``RAW_FRAME``)."""
    return "chat" if getattr(tokenizer, "chat_template", None) else "raw"


def user_turn_ids(tokenizer, content: str, raw_frame: str = RAW_FRAME) -> list[int]:
    """Token ids of ``content`` as a user turn with the generation prompt appended, in the tokenizer's mode.

    Chat mode renders the chat template (which carries its own special tokens); raw mode frames the
    turn as ``raw_frame`` (``{prompt}`` is the content) and lets the tokenizer add what its model file
    asks for (e.g. ``<bos>``). The readouts and steered generation render prompts with it.
    """
    if prompt_mode(tokenizer) == "chat":
        text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(raw_frame.format(prompt=content), add_special_tokens=True)["input_ids"])


@contextlib.contextmanager
def _skip_blocks(blocks, layer: int | None, cached: torch.Tensor | None):
    """Blocks 1..layer return at once (the last of them ``cached``); their hooks still run."""
    if layer is None or cached is None:
        yield
        return
    skipped = list(blocks[:layer])

    def passthrough(hidden_states=None, *args, **kwargs):
        return hidden_states  # its output is ignored: the next skipped block returns its own

    def cached_output(*args, **kwargs):
        return cached

    try:
        for block in skipped[:-1]:
            block.forward = passthrough
        skipped[-1].forward = cached_output
        yield
    finally:
        for block in skipped:
            if "forward" in vars(block):
                del block.forward


class _Stop(Exception):
    """Ends the forward pass that fills the block-output cache."""


@dataclass
class PreparedReadout:
    """Tokenised prompts of one readout, split into a shared prefix and per-statement rest.

    Attributes
    ----------
    prefix : list of int
        Token ids every prompt starts with (run once per call).
    batches : list of (rows, input_ids, attention_mask, keep)
        ``rows`` (LongTensor ``(b,)``) index the statements; ``input_ids`` and
        ``attention_mask`` ``(b, width)`` hold the rest, left padded; ``keep``: logits kept
        at the last ``keep`` columns.
    score : callable
        ``(logits (b, keep, vocab), batch index) -> float64 ndarray (b,)``.
    n : int
    reused : bool
        Whether the last ``scores(..., reuse_below=L)`` could reuse block outputs.
    blocks_path : str, optional
        Where the blocks are (``ExtractionSettings.blocks_path``); None: found as
        :func:`personas.model.hooks.find_blocks` finds them.
    """

    prefix: list
    batches: list
    score: Callable
    n: int
    reused: bool = False
    blocks_path: str | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def _run_prefix(self, model):
        """The KV cache of the shared prefix (batch 1), or None without a prefix."""
        if not self.prefix:
            return None
        device = model.get_input_embeddings().weight.device
        ids = torch.tensor([self.prefix], dtype=torch.long, device=device)
        kwargs = {"logits_to_keep": 1} if accepts(model, "logits_to_keep") else {}
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, **kwargs).past_key_values

    def _inputs(self, model, b: int, past) -> dict:
        _, input_ids, mask, _ = self.batches[b]
        device = model.get_input_embeddings().weight.device
        n_pre = len(self.prefix)
        full_mask = torch.cat([torch.ones((mask.shape[0], n_pre), dtype=mask.dtype), mask], dim=1)
        # positions over real tokens only: the padding between prefix and rest changes nothing
        pos = (n_pre + mask.cumsum(dim=1) - 1).clamp(min=0)
        kwargs = {"input_ids": input_ids.to(device), "attention_mask": full_mask.to(device)}
        if accepts(model, "position_ids"):
            kwargs["position_ids"] = pos.to(device)
        if past is not None:
            cache = copy.deepcopy(past)
            cache.batch_repeat_interleave(mask.shape[0])
            kwargs["past_key_values"] = cache
            kwargs["use_cache"] = True
        elif accepts(model, "use_cache"):
            kwargs["use_cache"] = False
        return kwargs

    def scores(self, model, *, reuse_below: int | None = None) -> np.ndarray:
        """One score per statement, float64 ``(n,)``, input order, under ``torch.inference_mode``.

        Parameters
        ----------
        reuse_below : int, optional
            A layer ``L >= 1``: the output of block ``L`` for each batch's rest is computed
            once (without interventions) and later calls skip blocks ``1..L``; exact when
            every intervention acts at layer ``L`` or later. Blocks that do not return a
            plain tensor are run in full (``reused`` says which).
        """
        out = np.empty(self.n, dtype=np.float64)
        with torch.inference_mode():
            cached = self._block_outputs(model, reuse_below) if reuse_below else None
            blocks = find_blocks(model, self.blocks_path)[1] if cached else None  # once per call, not per batch
            past = self._run_prefix(model)
            for b, (rows, _, _, keep) in enumerate(self.batches):
                kwargs = self._inputs(model, b, past)
                if accepts(model, "logits_to_keep"):
                    kwargs["logits_to_keep"] = keep
                with _skip_blocks(blocks, reuse_below, cached[b] if cached else None):
                    logits = model(**kwargs).logits[:, -keep:].float()
                out[rows.numpy()] = self.score(logits, b)
        return out

    def prime(self, model, layer: int) -> None:
        """Fill the block-output cache of ``layer`` now, before any intervention is active."""
        with torch.inference_mode():
            self._block_outputs(model, layer)

    def _block_outputs(self, model, layer: int) -> list | None:
        key = (id(model), int(layer))
        if key not in self._cache:
            _, blocks = find_blocks(model, self.blocks_path)
            if not 1 <= layer <= len(blocks):
                raise ValueError(f"reuse_below must be in 1..{len(blocks)}; got {layer}")
            outputs: list = []

            def hook(module, args, output):
                outputs.append(output)
                raise _Stop

            past = self._run_prefix(model)
            handle = blocks[layer - 1].register_forward_hook(hook)
            try:
                for b in range(len(self.batches)):
                    try:
                        model(**self._inputs(model, b, past))
                    except _Stop:
                        pass
            finally:
                handle.remove()
            ok = all(isinstance(o, torch.Tensor) for o in outputs)
            self._cache[key] = outputs if ok else None
        self.reused = self._cache[key] is not None
        return self._cache[key]


def _common_prefix(ids: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix, leaving every sequence at least one token."""
    n = min(len(x) for x in ids) - 1
    first = ids[0]
    for k in range(max(n, 0)):
        if any(x[k] != first[k] for x in ids):
            return k
    return max(n, 0)


def _batches(rests: list[list[int]], batch_size: int, pad_id: int, keep_of: Callable) -> list:
    """Left-padded batches of the per-statement rests, longest first."""
    order = sorted(range(len(rests)), key=lambda i: -len(rests[i]))
    out = []
    for k in range(0, len(order), batch_size):
        rows = order[k : k + batch_size]
        width = max(len(rests[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            input_ids[r, width - len(rests[i]) :] = torch.tensor(rests[i], dtype=torch.long)
            mask[r, width - len(rests[i]) :] = 1
        out.append((torch.tensor(rows, dtype=torch.long), input_ids, mask, keep_of(rows)))
    return out


def _split(model_accepts_cache: bool, ids: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    n_pre = _common_prefix(ids) if (model_accepts_cache and len(ids) > 1) else 0
    return list(ids[0][:n_pre]), [x[n_pre:] for x in ids]


class Readout:
    """A readout with a prepare step (tokenise once, run under many interventions).

    Subclasses set ``name``, implement ``prepare(tokenizer, statements, batch_size, share_prefix)`` and,
    when they can be built from the causal check's settings, ``from_settings(settings)``; ``describe()``
    returns what the report prints (``summary``) and what it records. Calling the object is the plain
    readout ``(model, tokenizer, statements) -> scores``. A new built-in readout is one entry in
    ``READOUTS`` (``docs/extending.md``).
    """

    name = "readout"

    @classmethod
    def from_settings(cls, settings) -> "Readout":
        """The readout as ``settings`` (a ``CausalSettings``, or any object with its fields) configures it."""
        return cls()

    def describe(self) -> dict:
        return {"name": self.name, "summary": "a user-supplied readout"}

    def not_applicable(self, model, tokenizer) -> str | None:
        """Why this readout cannot be formed for ``model`` (e.g. no language-model head), or None."""
        return no_lm_head_reason(model)

    def prepare(self, tokenizer, statements, batch_size: int = 16, share_prefix: bool = True,
                blocks_path: str | None = None) -> PreparedReadout:
        raise NotImplementedError

    def __call__(self, model, tokenizer, statements, *, batch_size: int = 16) -> np.ndarray:
        share = accepts(model, "past_key_values") and accepts(model, "use_cache")
        return self.prepare(tokenizer, statements, batch_size, share).scores(model)


def no_lm_head_reason(model) -> str | None:
    """Why ``model`` gives no trained next-token probabilities (an encoder, or no LM head), or None."""
    if model is None:
        return None
    family = model_family(model)
    if family is not None and family.encoder:
        kind = getattr(getattr(model, "config", None), "model_type", "encoder")
        return (f"{type(model).__name__} is a bidirectional encoder ({kind}): it has no trained language-model "
                "head, so it gives no next-token probabilities to read")
    if getattr(model, "get_output_embeddings", lambda: None)() is None:
        return f"{type(model).__name__} has no language-model head, so it gives no token probabilities"
    return None


class YesNoMargin(Readout):
    """``log p(Yes) - log p(No)`` at the first answer token (:mod:`personas.model.answers`)."""

    name = "yes_no"

    def __init__(self, rule: str = "logsumexp"):
        self.rule = rule
        self.mode = None

    @classmethod
    def from_settings(cls, settings) -> "YesNoMargin":
        return cls(settings.rule)

    def describe(self) -> dict:
        tokens = getattr(self, "tokens", None) or {}
        frame = "the chat template's user turn" if self.mode == "chat" else f"the raw frame {RAW_FRAME!r}"
        question = QUESTION.splitlines()[0]
        return {"name": self.name, "question": question, "rule": self.rule, "mode": self.mode,
                "answer_tokens": getattr(self, "tokens", None),
                "summary": f"log p(Yes) - log p(No) after \"{question}\" in {frame} "
                           f"(Yes tokens {tokens.get('yes_tokens')}, No tokens {tokens.get('no_tokens')})"}

    def not_applicable(self, model, tokenizer) -> str | None:
        why = no_lm_head_reason(model)
        if why is None:
            try:
                answer_tokens(tokenizer, self.rule)
            except ValueError as exc:
                why = str(exc)
        return why

    def prepare(self, tokenizer, statements, batch_size: int = 16, share_prefix: bool = True,
                blocks_path: str | None = None) -> PreparedReadout:
        batch_size = check_int(batch_size, "batch_size", min_val=1)
        tokens = answer_tokens(tokenizer, self.rule)
        self.tokens, self.mode = tokens, prompt_mode(tokenizer)
        ids = [user_turn_ids(tokenizer, QUESTION.format(statement=s.strip()) + INSTRUCTION)
               for s in statement_texts(statements)]
        prefix, rests = _split(share_prefix, ids)
        yes, no = torch.tensor(tokens["yes_ids"]), torch.tensor(tokens["no_ids"])

        def score(logits, b):
            last = logits[:, -1]
            m = torch.logsumexp(last[:, yes.to(last.device)], -1) - torch.logsumexp(last[:, no.to(last.device)], -1)
            return m.cpu().double().numpy()

        batches = _batches(rests, batch_size, pad_token_id(tokenizer), lambda rows: 1)
        return PreparedReadout(prefix=prefix, batches=batches, score=score, n=len(ids), blocks_path=blocks_path)


class StatementLikelihood(Readout):
    """Mean log p of the statement's tokens as the assistant's reply to ``prompt`` (no system message);
    for a model without a chat template, after ``RAW_FRAME`` (``"Q: <prompt>\\nA:"``)."""

    name = "likelihood"

    def __init__(self, prompt: str = NEUTRAL_PROMPT):
        self.prompt = check_str(prompt, "likelihood_prompt")
        self.mode = None

    @classmethod
    def from_settings(cls, settings) -> "StatementLikelihood":
        return cls(settings.likelihood_prompt)

    def describe(self) -> dict:
        if self.mode == "raw":
            where = f"the continuation of the raw frame {RAW_FRAME.format(prompt=self.prompt)!r} (no chat template)"
        else:
            where = f"the assistant's reply to the user turn \"{self.prompt}\" (no system message passed)"
        return {"name": self.name, "user_prompt": self.prompt, "mode": self.mode,
                "summary": f"the mean log-probability of the statement's tokens as {where}"}

    def prepare(self, tokenizer, statements, batch_size: int = 16, share_prefix: bool = True,
                blocks_path: str | None = None) -> PreparedReadout:
        batch_size = check_int(batch_size, "batch_size", min_val=1)
        self.mode = prompt_mode(tokenizer)
        head = user_turn_ids(tokenizer, self.prompt)
        # a raw frame ends in "A:"; the statement follows after a space
        texts = [(" " if self.mode == "raw" else "") + s.strip() for s in statement_texts(statements)]
        stmt = [list(x) for x in tokenizer(texts, add_special_tokens=False, padding=False)["input_ids"]]
        empty = [i for i, x in enumerate(stmt) if not x]
        if empty:
            raise ValueError(f"statements {empty[:5]} have no tokens; drop empty statements")
        # the rest starts at the prompt's last token: its logits predict the statement's first token
        n_pre = len(head) - 1 if share_prefix else 0
        prefix, rests = head[:n_pre], [head[n_pre:] + x for x in stmt]
        lengths = [len(x) for x in stmt]
        batches = _batches(rests, batch_size, pad_token_id(tokenizer), lambda rows: max(lengths[i] for i in rows) + 1)

        def score(logits, b):
            rows, _, _, keep = batches[b]
            logp = torch.log_softmax(logits, dim=-1)
            out = np.empty(len(rows))
            for r, i in enumerate(rows.tolist()):
                s = lengths[i]
                target = torch.tensor(stmt[i], device=logp.device)
                out[r] = logp[r, keep - 1 - s : keep - 1].gather(1, target[:, None]).mean().item()
            return out

        return PreparedReadout(prefix=prefix, batches=batches, score=score, n=len(stmt), blocks_path=blocks_path)


class _Callable(Readout):
    """A user's readout: called once per intervention, with the intervention active."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def describe(self) -> dict:
        return {"name": self.name, "callable": f"{getattr(self.fn, '__module__', '?')}.{self.name}",
                "summary": "a user-supplied readout"}

    def not_applicable(self, model, tokenizer) -> str | None:
        return None

    def prepare(self, tokenizer, statements, batch_size: int = 16, share_prefix: bool = True,
                blocks_path: str | None = None):
        fn, texts, name = self.fn, statement_texts(statements), self.name

        class _Prepared:
            reused = False

            def prime(self, model, layer):
                pass

            def scores(self, model, *, reuse_below=None):
                return check_scores(fn(model, tokenizer, texts), len(texts), name=name, statements=texts)

        return _Prepared()


#: The built-in readouts by name: each a ``Readout`` subclass with ``from_settings``.
READOUTS: dict[str, type[Readout]] = {"likelihood": StatementLikelihood, "yes_no": YesNoMargin}


def resolve_readout(spec, settings=None) -> Readout:
    """A ``Readout`` from a name in ``READOUTS`` (configured by ``settings``), a ``Readout`` or a callable.

    Parameters
    ----------
    spec : str, Readout or callable
    settings : CausalSettings, optional
        Passed to the registered class's ``from_settings`` (default: the class's own defaults).
    """
    if isinstance(spec, Readout):
        return spec
    if isinstance(spec, str):
        if spec not in READOUTS:
            raise ValueError(f"unknown readout {spec!r}; choose from {sorted(READOUTS)} or pass a callable "
                             "(model, tokenizer, statements) -> scores")
        cls = READOUTS[spec]
        return cls() if settings is None else cls.from_settings(settings)
    if callable(spec):
        return _Callable(spec)
    raise ValueError(f"a readout is a name in {sorted(READOUTS)} or a callable; got {spec!r}")


def yes_no_margin(model, tokenizer, statements, *, batch_size: int = 16, rule: str = "logsumexp") -> np.ndarray:
    """``log p(Yes) - log p(No)`` per statement, float64 ``(n,)`` (see :mod:`personas.model.answers`)."""
    return YesNoMargin(rule)(model, tokenizer, statements, batch_size=batch_size)


def statement_likelihood(model, tokenizer, statements, *, prompt: str = NEUTRAL_PROMPT,
                         batch_size: int = 16) -> np.ndarray:
    """Mean log p of each statement's tokens as the assistant's reply to ``prompt``, float64 ``(n,)``."""
    return StatementLikelihood(prompt)(model, tokenizer, statements, batch_size=batch_size)
