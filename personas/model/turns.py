"""Texts and conversations as model prompts, with the character span of every turn.

Scoring a text on a direction (:mod:`personas.model.projection`) needs to know which tokens
belong to which message. This module renders each input once, as a string, and records where
each message's content sits in it, as character offsets. Tokens are then assigned to turns
from the fast tokenizer's ``offset_mapping`` of that same string: a prompt is never re-encoded
piecewise to find a boundary (re-encoding a prefix can merge or split tokens across it).

Two kinds of input:

- a **plain text** is formatted exactly as extraction formats a statement
  (:func:`personas.model.prompts.format_prompts`: system message by default, the chat template,
  the generation prompt appended): one turn, the text itself;
- a **conversation** is a list of ``{"role", "content"}`` messages rendered with the chat
  template (``add_generation_prompt`` as asked). The content span of each message is found by
  rendering the conversation once more with a unique placeholder in place of each content and
  substituting the contents back: the spans are exact when the substitution gives the real
  rendering character for character (checked). Templates that rewrite content (trimming is
  handled) fall back to an in-order search of each content in the real rendering; when a
  content cannot be found the error names the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from personas.model.prompts import format_prompts

__all__ = ["Turn", "RenderedText", "render_texts", "render_conversations", "is_conversation"]


@dataclass(frozen=True)
class Turn:
    """One message of a rendered prompt.

    Attributes
    ----------
    role : str
        ``"system"``, ``"user"``, ``"assistant"``... (a plain text: the template mode it was
        formatted with, ``"system"``, ``"user"`` or ``"raw"``).
    start, end : int
        Character span ``[start, end)`` of the message's content in the rendered text.
    """

    role: str
    start: int
    end: int


@dataclass(frozen=True)
class RenderedText:
    """One input as the model sees it.

    Attributes
    ----------
    text : str
        The rendered prompt (chat template applied).
    turns : tuple of Turn
        The messages, in order (one for a plain text).
    span : (int, int)
        The character span that ``aggregate="mean"`` averages over: the text itself for a
        plain text, the last message's content for a conversation.
    add_special_tokens : bool
        Tokenize with the tokenizer's special tokens (only raw texts: a template holds its own).
    """

    text: str
    turns: tuple[Turn, ...]
    span: tuple[int, int]
    add_special_tokens: bool


def is_conversation(item) -> bool:
    """Whether ``item`` is a conversation (a list or tuple of message dicts), not a plain text."""
    return isinstance(item, (list, tuple)) and all(isinstance(m, dict) for m in item)


def render_texts(tokenizer, texts: Sequence[str], template: str = "auto", wrap: str = "{statement}") -> list[RenderedText]:
    """Plain texts formatted as extraction formats statements (one turn each)."""
    prompts = format_prompts(tokenizer, list(texts), template=template, wrap=wrap)
    return [
        RenderedText(text=t, turns=(Turn(prompts.mode, s, e),), span=(s, e), add_special_tokens=prompts.add_special_tokens)
        for t, (s, e) in zip(prompts.texts, prompts.spans)
    ]


def _check_messages(messages, index: int) -> list[dict]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"conversation {index} must be a non-empty list of {{'role', 'content'}} dicts")
    out = []
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(
                f"message {k} of conversation {index} must be a dict with string 'role' and 'content'; got {m!r}"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _apply(tokenizer, messages: list[dict], generation: bool, index: int) -> str:
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    except Exception as exc:  # jinja raise_exception, TemplateError...: the template rejects this conversation
        raise ValueError(f"the chat template rejects conversation {index} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(text, str):
        raise ValueError(f"the chat template returned {type(text).__name__} for conversation {index}, not a string")
    return text


def _placeholder(k: int) -> str:
    # private-use code points: never in real text, untouched by trim filters
    return f"\ue000{k}\ue001"


def _substitute(template_text: str, contents: list[str]) -> tuple[str, list[tuple[int, int]]] | None:
    """Put ``contents`` where the placeholders are; None if a placeholder is missing or repeated."""
    pieces, spans, cursor, length = [], [], 0, 0
    for k, content in enumerate(contents):
        mark = _placeholder(k)
        at = template_text.find(mark, cursor)
        if at < 0 or template_text.find(mark, at + len(mark)) >= 0:
            return None
        pieces.append(template_text[cursor:at])
        length += at - cursor
        spans.append((length, length + len(content)))
        pieces.append(content)
        length += len(content)
        cursor = at + len(mark)
    pieces.append(template_text[cursor:])
    return "".join(pieces), spans


def _search(text: str, contents: list[str], index: int) -> list[tuple[int, int]]:
    """Each content (or its stripped form) found in order in ``text``."""
    spans, cursor = [], 0
    for k, content in enumerate(contents):
        for needle in dict.fromkeys((content, content.strip())):
            at = text.find(needle, cursor)
            if at >= 0:
                spans.append((at, at + len(needle)))
                cursor = at + len(needle)
                break
        else:
            raise ValueError(
                f"cannot find the content of message {k} of conversation {index} in its rendered chat template "
                "(the template rewrites it); score it as a plain text instead"
            )
    return spans


def _content_spans(tokenizer, messages: list[dict], text: str, generation: bool, index: int) -> list[tuple[int, int]]:
    marked = [dict(m, content=_placeholder(k)) for k, m in enumerate(messages)]
    template_text = _apply(tokenizer, marked, generation, index)
    for contents in ([m["content"] for m in messages], [m["content"].strip() for m in messages]):
        got = _substitute(template_text, contents)
        if got is not None and got[0] == text:
            return got[1]
    return _search(text, [m["content"] for m in messages], index)


def render_conversations(tokenizer, conversations: Sequence, add_generation_prompt: bool = False) -> list[RenderedText]:
    """Conversations rendered with the chat template, with each message's content span.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Needs a chat template.
    conversations : sequence of list of dict
        Each a list of ``{"role": str, "content": str}`` messages.
    add_generation_prompt : bool
        Append the template's assistant header (score the position before a reply).

    Returns
    -------
    list of RenderedText
        One per conversation; ``span`` is the last message's content.

    Raises
    ------
    ValueError
        No chat template, a malformed message, a template that rejects a conversation, or a
        message whose content cannot be located (named).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("conversations need a chat template, but the tokenizer has none; pass plain texts instead")
    out = []
    for i, conversation in enumerate(conversations):
        messages = _check_messages(conversation, i)
        text = _apply(tokenizer, messages, add_generation_prompt, i)
        spans = _content_spans(tokenizer, messages, text, add_generation_prompt, i)
        turns = tuple(Turn(m["role"], s, e) for m, (s, e) in zip(messages, spans))
        out.append(RenderedText(text=text, turns=turns, span=spans[-1], add_special_tokens=False))
    return out
