"""Prompt formatting: how a statement is shown to the model.

The paper's protocol (mode ``"system"``): the statement alone as a system message,
rendered with the tokenizer's chat template, generation prompt appended. Modes:

- ``"system"``: ``[{"role": "system", "content": statement}]`` + generation prompt;
- ``"user"``: the same as a user message (for templates without a system role);
- ``"raw"``: the statement text itself (tokenizers without a chat template, encoders);
- ``"auto"`` (default): ``"system"``, falling back to ``"user"`` when the template
  raises on a system message or drops its content (as Gemma's does), and to ``"raw"``
  when the tokenizer has no chat template. The mode used is recorded.

Special tokens: a rendered chat template already holds the special tokens it needs
(e.g. Llama-3's ``<|begin_of_text|>``), so templated prompts are tokenized with
``add_special_tokens=False``, exactly as ``tokenizer.apply_chat_template(...,
tokenize=True)`` does (no double BOS). Raw prompts get the tokenizer's special tokens
(BOS for decoders, ``[CLS] … [SEP]`` for BERT).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TEMPLATE_MODES", "Prompts", "format_prompts"]

TEMPLATE_MODES = ("auto", "system", "user", "raw")


@dataclass
class Prompts:
    """Formatted prompts, one per statement.

    Attributes
    ----------
    texts : list of str
        The prompt strings.
    spans : list of (int, int)
        Character span ``[start, end)`` of the statement inside each prompt.
    mode : str
        The mode used: ``"system"``, ``"user"`` or ``"raw"``.
    add_special_tokens : bool
        Whether to tokenize with the tokenizer's special tokens (False for templated
        prompts: the template holds them).
    requested : str
        The mode asked for (``"auto"`` or the explicit mode).
    wrap : str
        Format string applied to each statement before templating.
    fallback_reason : str or None
        Why ``"auto"`` did not use ``"system"``.
    """

    texts: list[str]
    spans: list[tuple[int, int]]
    mode: str
    add_special_tokens: bool
    requested: str = "auto"
    wrap: str = "{statement}"
    fallback_reason: str | None = None

    def __len__(self) -> int:
        return len(self.texts)


class _TemplateRejected(ValueError):
    """The chat template raised on, or silently dropped, the message content."""


def _render(tokenizer, role: str, content: str) -> str:
    """Render one message with the chat template, generation prompt appended."""
    try:
        text = tokenizer.apply_chat_template(
            [{"role": role, "content": content}], tokenize=False, add_generation_prompt=True
        )
    except Exception as exc:  # jinja raise_exception, TemplateError, ...: the template rejects this role
        raise _TemplateRejected(f"the chat template rejects a {role} message ({type(exc).__name__}: {exc})") from exc
    if not isinstance(text, str):
        raise _TemplateRejected(f"the chat template returned {type(text).__name__}, not a string")
    return text


def _locate(text: str, content: str, statement: str, prefix_len: int) -> int | None:
    """Start of ``statement`` in ``text``, found through its message ``content``.

    The statement sits at ``prefix_len`` inside ``content``; templates may trim the
    content, so the trimmed form is tried too. Searching from the end skips any
    preamble the template adds before the message.
    """
    for needle in dict.fromkeys((content, content.strip())):
        pos = text.rfind(needle) if needle else -1
        if pos < 0:
            continue
        lead = 0 if needle == content else len(content) - len(content.lstrip())
        start = pos + prefix_len - lead
        if text[start : start + len(statement)] == statement:
            return start
    return None


def _format_mode(tokenizer, statements: list[str], mode: str, wrap: str) -> tuple[list[str], list[tuple[int, int]]]:
    prefix_len = len(wrap[: wrap.index("{statement}")].format())
    texts, spans = [], []
    for s in statements:
        content = wrap.format(statement=s)
        text = content if mode == "raw" else _render(tokenizer, mode, content)
        start = _locate(text, content, s, prefix_len)
        if start is None:
            raise _TemplateRejected(f"the chat template drops the content of a {mode} message")
        texts.append(text)
        spans.append((start, start + len(s)))
    return texts, spans


def format_prompts(tokenizer, statements, template: str = "auto", wrap: str = "{statement}") -> Prompts:
    """Format statements as model prompts (the paper's system-message protocol by default).

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Its ``chat_template`` (if any) is used.
    statements : sequence of str
        One prompt per statement, in order (surrounding whitespace is stripped).
    template : {"auto", "system", "user", "raw"}
        See the module docstring. An explicit ``"system"`` or ``"user"`` that the
        template cannot render is an error.
    wrap : str
        Format string with one ``{statement}`` field applied before templating, e.g.
        ``'Is the following statement something you would say?\\n"{statement}"'``.

    Returns
    -------
    Prompts
        ``texts``, statement ``spans``, the ``mode`` used and ``add_special_tokens``.

    Raises
    ------
    ValueError
        Unknown ``template``, a bad ``wrap``, or an explicit mode the template rejects.
    """
    if template not in TEMPLATE_MODES:
        raise ValueError(f"template must be one of {TEMPLATE_MODES}, got {template!r}")
    if not isinstance(wrap, str) or wrap.count("{statement}") != 1:
        raise ValueError(f"wrap must be a string with exactly one '{{statement}}' field, got {wrap!r}")
    try:
        wrap.format(statement="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"wrap {wrap!r} has fields other than {{statement}} (double literal braces: '{{{{')") from exc
    # templates commonly trim message content; strip up front so every mode sees the same statement
    statements = [str(s).strip() for s in statements]
    if not statements:
        raise ValueError("no statements to format")
    if any(not s for s in statements):
        raise ValueError("statements must not be empty strings")

    has_template = bool(getattr(tokenizer, "chat_template", None))
    reason = None
    if template == "auto":
        if not has_template:
            mode, reason = "raw", "the tokenizer has no chat template"
        else:
            mode = "system"
            try:
                texts, spans = _format_mode(tokenizer, statements, "system", wrap)
            except _TemplateRejected as exc:
                mode, reason = "user", str(exc)
    else:
        mode = template
        if mode != "raw" and not has_template:
            raise ValueError(f"template={mode!r} needs a chat template, but the tokenizer has none; use 'raw' or 'auto'")

    if not (template == "auto" and mode == "system"):
        try:
            texts, spans = _format_mode(tokenizer, statements, mode, wrap)
        except _TemplateRejected as exc:
            hint = "try template='user' or 'auto'" if mode == "system" else "try template='raw'"
            raise ValueError(f"cannot format prompts with template={mode!r}: {exc}; {hint}") from exc
    return Prompts(
        texts=texts,
        spans=spans,
        mode=mode,
        add_special_tokens=(mode == "raw"),
        requested=template,
        wrap=wrap,
        fallback_reason=reason,
    )
