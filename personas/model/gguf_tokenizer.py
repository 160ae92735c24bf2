"""A GGUF model's tokenizer follows the file: special tokens, BOS/EOS adding, chat template.

``transformers`` rebuilds a tokenizer from a GGUF file's vocabulary, but not always as the
file says: Gemma-3's file says ``tokenizer.ggml.add_bos_token = True`` while the tokenizer
``transformers`` builds adds no ``<bos>`` (and Gemma degenerates without it). Where they
disagree the file wins: :func:`follow_gguf_tokenizer` sets the special tokens, makes
``tokenizer(text)`` add BOS/EOS as the file says (through the fast tokenizer's
post-processor, so every stage gets it for free) and sets the chat template, and returns
what it changed, for a one-line note.
"""

from __future__ import annotations

from personas.model.gguf_file import GGUFTokenizerSpec

__all__ = ["added_special_tokens", "follow_gguf_tokenizer"]

_ROLES = ("bos", "eos", "unk", "pad")


def added_special_tokens(tokenizer) -> tuple[bool, bool]:
    """Whether ``tokenizer(text)`` puts its BOS first and its EOS last (judged on a short text)."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    extra = len(full) - len(plain)
    bos = extra > 0 and tokenizer.bos_token_id is not None and full[0] == tokenizer.bos_token_id \
        and full[1:1 + len(plain)] == plain
    eos = extra > 0 and tokenizer.eos_token_id is not None and full[-1] == tokenizer.eos_token_id \
        and full[len(full) - 1 - len(plain):-1] == plain
    return bool(bos), bool(eos)


def _set_adding(tokenizer, add_bos: bool, add_eos: bool) -> None:
    """Make ``tokenizer(text)`` add BOS / EOS as asked, through the fast tokenizer's post-processor."""
    from tokenizers import processors

    kind = type(tokenizer)
    if isinstance(getattr(kind, "add_bos_token", None), property) and kind.add_bos_token.fset is not None:
        backend = tokenizer.backend_tokenizer
        old = backend.post_processor
        tokenizer.add_bos_token = add_bos  # transformers rebuilds the post-processor from both flags
        tokenizer.add_eos_token = add_eos
        if old is not None and not isinstance(old, processors.TemplateProcessing):
            backend.post_processor = processors.Sequence([old, backend.post_processor])  # keep e.g. ByteLevel offsets
        return
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    single = " ".join([*(["$bos"] if add_bos else []), "$A:0", *(["$eos"] if add_eos else [])])
    single = single.replace("$bos", f"{bos}:0").replace("$eos", f"{eos}:0")
    pair = single + " " + single.replace("$A:0", "$B:1").replace(":0", ":1")
    specials = [(t, tokenizer.convert_tokens_to_ids(t)) for t, on in ((bos, add_bos), (eos, add_eos)) if on]
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair,
                                                                               special_tokens=specials)


def follow_gguf_tokenizer(tokenizer, spec: GGUFTokenizerSpec) -> tuple[str, ...]:
    """Make ``tokenizer`` follow what its GGUF file says; return each change made, as short phrases.

    Parameters
    ----------
    tokenizer : transformers fast tokenizer
        Changed in place.
    spec : GGUFTokenizerSpec
        What the file records (``None`` fields: the file does not say; left as they are).

    Returns
    -------
    tuple of str
        One phrase per setting where the tokenizer disagreed with the file, e.g.
        ``"add_bos_token=True (transformers' tokenizer added no '<bos>')"``; empty when they agreed.

    Raises
    ------
    RuntimeError
        When the tokenizer cannot be made to add BOS/EOS as the file says.
    """
    changes = []
    for role in _ROLES:
        want = getattr(spec, f"{role}_token_id")
        have = getattr(tokenizer, f"{role}_token_id")
        if want is None or want == have or not 0 <= want < len(tokenizer):
            continue
        token = tokenizer.convert_ids_to_tokens(want)
        setattr(tokenizer, f"{role}_token", token)
        changes.append(f"{role}_token={token!r} (id {want}; transformers' tokenizer had id {have})")
    added = added_special_tokens(tokenizer)
    want = tuple(have if file is None else file
                 for have, file in zip(added, (spec.add_bos_token, spec.add_eos_token)))
    flags = (getattr(tokenizer, "add_bos_token", None), getattr(tokenizer, "add_eos_token", None))
    if want != added or flags not in (want, (None, None)):
        _set_adding(tokenizer, *want)
        now = added_special_tokens(tokenizer)
        if now != want:
            raise RuntimeError(f"could not make the tokenizer add BOS={want[0]}, EOS={want[1]} as its GGUF file "
                               f"says (it adds BOS={now[0]}, EOS={now[1]}); report this with the model name")
        for name, token, before, after in (("add_bos_token", tokenizer.bos_token, added[0], want[0]),
                                           ("add_eos_token", tokenizer.eos_token, added[1], want[1])):
            if before != after:
                did = "added no" if after else "added"
                changes.append(f"{name}={after} (transformers' tokenizer {did} {token!r})")
    template = getattr(tokenizer, "chat_template", None) or None
    if template != spec.chat_template:
        tokenizer.chat_template = spec.chat_template
        changes.append("the chat template of the file" if spec.chat_template else "no chat template, as in the file")
    return tuple(changes)
