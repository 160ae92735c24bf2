"""Prompt formatting: the paper's system message, template fallbacks, no double BOS, statement spans."""

from __future__ import annotations

import numpy as np
import pytest

from personas.model.batching import tokenize_prompts
from personas.model.extraction import ExtractionSettings, extract_activations
from personas.model.prompts import format_prompts
from tiny_models import make_model, make_tokenizer

STATEMENTS = ["I like meeting new people", "  Rules are there to be broken  ", 'I say "no" {often}']


@pytest.fixture(scope="module")
def toks():
    return {name: make_tokenizer(name) for name in ("llama3", "gemma", "drops_system", "chatml", None)}


def test_system_mode_is_the_paper_format_without_double_bos(toks):
    tok = toks["llama3"]
    p = format_prompts(tok, STATEMENTS)
    assert (p.mode, p.requested, p.fallback_reason, p.add_special_tokens) == ("system", "auto", None, False)
    assert p.texts[0] == (
        "<s><|start_header_id|>system<|end_header_id|>\n\nI like meeting new people<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids, _ = tokenize_prompts(tok, p, need_spans=False)
    for i, s in enumerate(STATEMENTS):
        # identical to what apply_chat_template(tokenize=True) gives, i.e. the published procedure
        expected = tok.apply_chat_template([{"role": "system", "content": s}], add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
        assert ids[i] == list(expected)
        assert ids[i][0] == tok.bos_token_id and ids[i][1] != tok.bos_token_id  # one BOS, not two
        assert ids[i].count(tok.bos_token_id) == 1
    # statements are stripped; spans point at them exactly, braces and quotes included
    assert [t[a:b] for t, (a, b) in zip(p.texts, p.spans)] == [s.strip() for s in STATEMENTS]


def test_template_rejecting_system_falls_back_to_user(toks):
    p = format_prompts(toks["gemma"], STATEMENTS)
    assert p.mode == "user"
    assert "System role not supported" in p.fallback_reason
    assert p.texts[0] == "<s><start_of_turn>user\nI like meeting new people<end_of_turn>\n<start_of_turn>model\n"
    with pytest.raises(ValueError, match="template='system'.*rejects a system message.*try template='user'"):
        format_prompts(toks["gemma"], STATEMENTS, template="system")


def test_template_dropping_system_content_falls_back_to_user(toks):
    p = format_prompts(toks["drops_system"], STATEMENTS)
    assert p.mode == "user" and "drops the content" in p.fallback_reason
    assert p.texts[0] == "<s>[INST] I like meeting new people [/INST]"


def test_no_template_uses_raw_statement_with_special_tokens(toks):
    tok = toks[None]
    p = format_prompts(tok, STATEMENTS)
    assert (p.mode, p.add_special_tokens, p.fallback_reason) == ("raw", True, "the tokenizer has no chat template")
    assert p.texts[1] == "Rules are there to be broken" and p.spans[1] == (0, 28)
    ids, _ = tokenize_prompts(tok, p, need_spans=False)
    assert ids[0][0] == tok.bos_token_id and ids[0].count(tok.bos_token_id) == 1
    with pytest.raises(ValueError, match="needs a chat template"):
        format_prompts(tok, STATEMENTS, template="user")


def test_template_without_bos_gets_no_bos(toks):
    tok = toks["chatml"]
    p = format_prompts(tok, STATEMENTS)
    assert p.mode == "system" and not p.add_special_tokens
    ids, _ = tokenize_prompts(tok, p, need_spans=False)
    assert tok.bos_token_id not in ids[0]


def test_explicit_modes_and_wrap(toks):
    tok = toks["llama3"]
    wrap = 'Is the following statement something you would say?\n"{statement}"'
    p = format_prompts(tok, STATEMENTS, template="user", wrap=wrap)
    assert p.mode == "user" and p.requested == "user"
    assert '<|start_header_id|>user<|end_header_id|>\n\nIs the following statement something you would say?\n"I like' in p.texts[0]
    assert [t[a:b] for t, (a, b) in zip(p.texts, p.spans)] == [s.strip() for s in STATEMENTS]
    raw = format_prompts(tok, STATEMENTS, template="raw")
    assert raw.texts[0] == STATEMENTS[0] and raw.add_special_tokens


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(template="chat"), "template must be one of"),
        (dict(wrap="no field"), "exactly one '{statement}'"),
        (dict(wrap="{statement} {other}"), "fields other than"),
    ],
)
def test_bad_arguments(toks, kwargs, message):
    with pytest.raises(ValueError, match=message):
        format_prompts(toks["llama3"], STATEMENTS, **kwargs)


def test_empty_statement_is_an_error(toks):
    with pytest.raises(ValueError, match="must not be empty"):
        format_prompts(toks["llama3"], ["fine", "   "])


def test_extraction_records_template_choice_and_fallback_changes_activations(toks):
    model = make_model("gemma")
    a_user, info = extract_activations(model, toks["gemma"], STATEMENTS, [1], progress=False)
    assert info["template_mode"] == "user" and "System role" in info["template_fallback"]
    assert info["prompt_example"].startswith("<s><start_of_turn>user\n")
    a_raw, info_raw = extract_activations(model, toks["gemma"], STATEMENTS, [1], ExtractionSettings(template="raw"), progress=False)
    assert info_raw["template_mode"] == "raw" and info_raw["add_special_tokens"]
    assert np.abs(a_user[1] - a_raw[1]).max() > 1e-3
