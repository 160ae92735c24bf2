"""Tiny randomly initialised models and an offline tokenizer for extraction tests.

Everything is built in memory (no download): a byte-level BPE tokenizer trained on a
few hundred bundled statements, wrapped in ``PreTrainedTokenizerFast`` with
``<s>``/``</s>``/``<pad>`` and one of a few chat templates written here, and tiny
models (hidden 32, 3 blocks, 4 heads) built from the configs of the architectures
the hook core supports. Also used by ``benchmarks/bench_extraction.py``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from personas.statements import load_statements

__all__ = [
    "TEMPLATES",
    "ARCHITECTURES",
    "tiny_statements",
    "make_tokenizer",
    "tiny_config",
    "make_model",
    "planted_tokenizer",
    "PERSONAS",
    "UNITS",
    "BIAS_UNIT",
    "persona_statements",
    "token_polarity",
    "planted_persona_model",
]

# Llama-3-like: BOS in the template, accepts a system message, trims the content.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# Gemma-like: raises on a system message.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# Silently drops system messages (as some instruction templates do when no user turn follows).
DROPS_SYSTEM_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "[INST] {{ message['content'] }} [/INST]{% endif %}{% endfor %}"
)
# ChatML-like (Qwen): no BOS in the template.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEMPLATES = {
    "llama3": LLAMA3_TEMPLATE,
    "gemma": GEMMA_TEMPLATE,
    "drops_system": DROPS_SYSTEM_TEMPLATE,
    "chatml": CHATML_TEMPLATE,
    None: None,
}
SPECIAL_TOKENS = [
    "<pad>",
    "<s>",
    "</s>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|im_start|>",
    "<|im_end|>",
    "[INST]",
    "[/INST]",
]


@lru_cache(maxsize=4)
def tiny_statements(n: int = 200, persona: str = "agreeableness") -> tuple[str, ...]:
    """The first ``n`` bundled statements of ``persona`` (both directions)."""
    from personas.statements import load_statements

    df = load_statements(persona, n_per_direction=None, min_confidence=0.0)
    return tuple(df["statement"].iloc[:n])


@lru_cache(maxsize=2)
def _trained_bpe(vocab_size: int = 600) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(tiny_statements(400)) + ["system user assistant model\n\n"] * 5
    tok.train_from_iterator(corpus, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return tok.to_str()  # serialised: each caller gets a fresh, independent copy


def make_tokenizer(template: str | None = "llama3", padding_side: str = "right"):
    """An offline byte-level BPE tokenizer (~600 tokens) that adds ``<s>`` as BOS.

    Parameters
    ----------
    template : {"llama3", "gemma", "drops_system", "chatml", None}
        Chat template (see ``TEMPLATES``); None for no template.
    padding_side : {"left", "right"}
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_bpe()),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        padding_side=padding_side,
    )
    tok.chat_template = TEMPLATES[template]
    return tok


def tiny_config(arch: str, vocab_size: int = 600, n_blocks: int = 3, hidden: int = 32, heads: int = 4):
    """A tiny config of ``arch`` (a key of ``ARCHITECTURES``)."""
    import transformers as tf

    common = dict(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    decoder = dict(
        common,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=n_blocks,
        num_attention_heads=heads,
        max_position_embeddings=256,
    )
    if arch == "llama":
        return tf.LlamaConfig(**decoder, num_key_value_heads=heads // 2)
    if arch == "mistral":
        return tf.MistralConfig(**decoder, num_key_value_heads=heads // 2, sliding_window=None)
    if arch == "gemma":
        return tf.GemmaConfig(**decoder, num_key_value_heads=1, head_dim=hidden // heads)
    if arch == "gemma2":
        return tf.Gemma2Config(
            **decoder,
            num_key_value_heads=heads // 2,
            head_dim=hidden // heads,
            query_pre_attn_scalar=hidden // heads,
            sliding_window=16,  # shorter than the prompts: the sliding layers really slide
        )
    if arch == "gemma3":
        # Gemma-3 blocks: sandwich norms (pre and post attention / feed-forward), embeddings scaled by
        # sqrt(hidden), 5 sliding-window layers per full-attention layer (here: sliding, sliding, full)
        return tf.Gemma3TextConfig(
            **decoder,
            num_key_value_heads=1,
            head_dim=hidden // heads,
            query_pre_attn_scalar=hidden // heads,
            sliding_window=4,  # shorter than the prompts: the sliding layers really slide
            layer_types=[("full_attention" if (i + 1) % 3 == 0 else "sliding_attention") for i in range(n_blocks)],
        )
    if arch == "qwen2":
        return tf.Qwen2Config(**decoder, num_key_value_heads=heads // 2)
    if arch == "granite":
        return tf.GraniteConfig(
            **decoder,
            num_key_value_heads=heads // 2,
            embedding_multiplier=6.0,
            residual_multiplier=0.5,
            attention_multiplier=0.25,
            logits_scaling=4.0,
        )
    if arch == "phi3":
        return tf.Phi3Config(**decoder, num_key_value_heads=heads // 2)
    if arch == "gpt2":
        return tf.GPT2Config(**common, n_embd=hidden, n_layer=n_blocks, n_head=heads, n_positions=256)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(**decoder)
    if arch == "bert":
        return tf.BertConfig(
            vocab_size=vocab_size,
            pad_token_id=0,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=n_blocks,
            num_attention_heads=heads,
            max_position_embeddings=256,
        )
    raise ValueError(f"unknown tiny architecture {arch!r}; choose from {ARCHITECTURES}")


ARCHITECTURES = ("llama", "mistral", "gemma", "gemma2", "gemma3", "qwen2", "granite", "phi3", "gpt2", "gpt_neox", "bert")


def make_model(arch: str, seed: int = 0, causal_lm: bool = False, **config_kwargs):
    """A tiny randomly initialised base model (or ``…ForCausalLM``) in eval mode, float32."""
    from transformers import AutoModel, AutoModelForCausalLM

    config = tiny_config(arch, **config_kwargs)
    torch.manual_seed(seed)
    cls = AutoModelForCausalLM if causal_lm else AutoModel
    model = cls.from_config(config, dtype=torch.float32)
    return model.eval()


# ---------------------------------------------------------------- planted models
# The planted persona model: a tiny LlamaForCausalLM whose blocks add nothing (zeroed output
# projections) and whose final norm is the identity, so the hidden state at every layer is the
# token embedding and logits = lm_head . h. Each persona p owns one unit u_p: a token's
# embedding there is g * c_p(t) and its LM-head weight k * c_p(t), where c_p(t) in [-1, 1] says
# how much more often token t appears in p's ``+`` statements than in its ``-`` ones. A bias unit,
# 1 in every embedding, with head weight sum_p c_p(t), makes ``+`` statements likelier at baseline.
# Adding alpha * e_{u_p} at a layer raises every token's logit by alpha * k * c_p(t): ``+``
# statements of p gain log-probability, ``-`` ones lose it; the Yes/No margin, read at the
# template's last token (the same token for every statement), is constant: it always says No.


def planted_tokenizer(padding_side="left"):
    """The tiny tokenizer with single-token answers "Yes", "No", "yes" (ids 600, 601, 602)."""
    tok = make_tokenizer("llama3", padding_side=padding_side)
    tok.add_tokens(["Yes", "No", "yes"])  # single-token answers (ids 600, 601, 602)
    return tok


PERSONAS = ["agreeableness", "politically-liberal", "subscribes-to-deontology", "narcissism"]
UNITS = [20, 21, 22, 23]
BIAS_UNIT = 25


def persona_statements(n_per_direction=30):
    return load_statements(PERSONAS, n_per_direction=n_per_direction, min_confidence=0.0, seed=2)


def token_polarity(tok, statements, persona):
    """c_p(t): (#+ - #-) / (#+ + #- + 1) over the persona's statements' tokens."""
    rows = statements[statements["persona"] == persona]
    counts = np.zeros((2, len(tok)))
    for side, direction in enumerate(("positive", "negative")):
        for text in rows.loc[rows["direction"] == direction, "statement"]:
            for t in tok(text.strip(), add_special_tokens=False)["input_ids"]:
                counts[side, t] += 1
    return (counts[0] - counts[1]) / (counts.sum(0) + 1)


def planted_persona_model(tok, statements, g=1.0, k=3.0):
    model = make_model("llama", seed=0, causal_lm=True, vocab_size=len(tok), hidden=32, n_blocks=3)
    with torch.no_grad():
        for block in model.model.layers:
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
        model.model.norm = nn.Identity()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb[:, UNITS + [BIAS_UNIT]] = 0.0
        head[:, UNITS + [BIAS_UNIT]] = 0.0
        emb[:, BIAS_UNIT] = 1.0
        for persona, unit in zip(PERSONAS, UNITS):
            c = torch.tensor(token_polarity(tok, statements, persona), dtype=torch.float32)
            emb[:, unit] = g * c
            head[:, unit] = k * c
            head[:, BIAS_UNIT] += c
        yes, no = tok.convert_tokens_to_ids(["Yes", "No"])
        head[[yes, no]] = 0.0
        head[no, BIAS_UNIT] = 5.0  # always No
    return model
