"""A tiny random Llama GGUF file (F32 tensors, byte-level BPE vocabulary) for the model-cache tests.

Written with the ``gguf`` package's writer in milliseconds; ``transformers`` dequantises it in a
second or two, so the cache's build, verification and rebuild paths run on a real GGUF file
without the minutes a real model takes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["SPECIALS", "byte_alphabet", "write_tiny_gguf"]

SPECIALS = ("<pad>", "<s>", "</s>")


def byte_alphabet() -> list[str]:
    """GPT-2's 256 byte-level symbols, in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + n))
            n += 1
    return chars


def write_tiny_gguf(path, *, add_bos: bool | None = True, chat_template: str | None = None, n_blocks: int = 2,
                    hidden: int = 32, heads: int = 4, seed: int = 0) -> Path:
    """Write a random ``n_blocks``-block Llama GGUF with ids 0/1/2 = ``<pad>``/``<s>``/``</s>``; return its path.

    ``add_bos`` is written as ``tokenizer.ggml.add_bos_token`` (None: the key is left out).
    """
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens = list(SPECIALS) + byte_alphabet() + ["Ġt", "he", "Ġthe"]
    types = [gguf.TokenType.CONTROL] * len(SPECIALS) + [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIALS))
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_block_count(n_blocks)
    w.add_context_length(128)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(2 * hidden)
    w.add_head_count(heads)
    w.add_head_count_kv(heads // 2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["Ġ t", "h e", "Ġt he"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    kv = hidden // heads * (heads // 2)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    w.add_tensor("token_embd.weight", weight(len(tokens), hidden))
    for i in range(n_blocks):
        w.add_tensor(f"blk.{i}.attn_norm.weight", 1 + weight(hidden))
        w.add_tensor(f"blk.{i}.attn_q.weight", weight(hidden, hidden))
        w.add_tensor(f"blk.{i}.attn_k.weight", weight(kv, hidden))
        w.add_tensor(f"blk.{i}.attn_v.weight", weight(kv, hidden))
        w.add_tensor(f"blk.{i}.attn_output.weight", weight(hidden, hidden))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", 1 + weight(hidden))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", weight(2 * hidden, hidden))
        w.add_tensor(f"blk.{i}.ffn_up.weight", weight(2 * hidden, hidden))
        w.add_tensor(f"blk.{i}.ffn_down.weight", weight(hidden, 2 * hidden))
    w.add_tensor("output_norm.weight", 1 + weight(hidden))
    w.add_tensor("output.weight", weight(len(tokens), hidden))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
