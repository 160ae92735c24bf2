"""Model loading that cannot be fooled: the checked model name, the verified GGUF cache, the tokenizer of the file.

Everything runs on a tiny random Llama GGUF (``tiny_gguf.py``) in a temporary cache, through
``load_model`` and ``check_model_source``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import pytest
import torch

from personas._core.notes import ModelNote
from personas.model.gguf import verify_cache_entry
from personas.model.gguf_file import GGUFError
from personas.model.loading import load_model, model_info
from personas.model.model_cache import indexed_sha256, quick_sha256
from personas.model.sources import MODEL_ALIASES, check_model_source, display_name
from personas.store.fingerprints import model_fingerprint
from tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``(gguf file, cache root, first load's hidden states)``; the cache entry is built once here."""
    root = tmp_path_factory.mktemp("tiny")
    path = write_tiny_gguf(root / "models" / "tiny-llama.F32.gguf")
    cache = root / "cache"
    with pytest.warns(ModelNote, match=r"add_bos_token=True \(transformers' tokenizer added no '<s>'\)"):
        model, tok = load_model(str(path), cache_dir=cache, progress=False)
    return path, cache, _hidden(model, tok)


def _hidden(model, tok):
    enc = tok(["the cat sat", "the end"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return [h.clone() for h in model(**enc, output_hidden_states=True).hidden_states]


def _entry(tiny_case) -> Path:
    path, cache, _ = tiny_case
    return cache / "gguf" / hashlib.sha256(path.read_bytes()).hexdigest()


def _load_quiet(tiny_case):
    path, cache, _ = tiny_case
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelNote)  # an intact entry loads without a note
        return load_model(str(path), cache_dir=cache, progress=False)


def test_entry_records_every_file_and_a_hit_is_silent(tiny):
    entry = _entry(tiny)
    about = json.loads((entry / "personas-gguf.json").read_text(encoding="utf-8"))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(about["files"])
    for name, rec in about["files"].items():
        data = (entry / name).read_bytes()
        assert rec["size"] == len(data) and rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert about["tokenizer_spec"]["add_bos_token"] is True and about["tokenizer_fixes"]
    assert verify_cache_entry(entry) == [] and verify_cache_entry(entry, full=False) == []
    model, tok = _load_quiet(tiny)
    assert all(torch.equal(a, b) for a, b in zip(_hidden(model, tok), tiny[2]))


def test_gguf_tokenizer_follows_the_file(tiny):
    model, tok = _load_quiet(tiny)
    ids = tok("the cat")["input_ids"]
    assert ids[0] == tok.bos_token_id == 1 and ids[1:] == tok("the cat", add_special_tokens=False)["input_ids"]
    assert ids.count(1) == 1 and tok.pad_token_id == 0 and tok.eos_token_id == 2
    info = model_info(model)
    assert any("add_bos_token=True" in fix for fix in info["tokenizer_fixes"])


def test_one_bos_whether_the_prompt_is_raw_or_a_template_that_holds_it(tiny):
    from personas.model.batching import tokenize_prompts
    from personas.model.prompts import format_prompts

    _, tok = _load_quiet(tiny)
    try:
        tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        for template in ("raw", "system"):
            prompts = format_prompts(tok, ["the cat", "the end"], template=template)
            assert prompts.add_special_tokens == (template == "raw")
            ids, _ = tokenize_prompts(tok, prompts, need_spans=False)
            assert all(row[0] == 1 and row.count(1) == 1 for row in ids), (template, ids)
    finally:
        tok.chat_template = None


def test_file_without_add_bos_gets_no_bos_and_its_chat_template(tmp_path):
    template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"
    path = write_tiny_gguf(tmp_path / "plain.gguf", add_bos=False, chat_template=template)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelNote)  # transformers agrees with the file here: no note
        model, tok = load_model(str(path), cache_dir=tmp_path / "cache", progress=False)
    assert tok("the")["input_ids"] == tok("the", add_special_tokens=False)["input_ids"]
    assert tok.chat_template == template
    assert "tokenizer_fixes" not in model_info(model)


def test_truncated_weights_in_the_cache_are_rebuilt_with_a_note(tiny):
    weights = _entry(tiny) / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.warns(ModelNote, match=r"rebuilding the model cache entry .*model\.safetensors has .* bytes"):
        model, tok = load_model(str(tiny[0]), cache_dir=tiny[1], progress=False)
    assert weights.stat().st_size == size
    assert all(torch.equal(a, b) for a, b in zip(_hidden(model, tok), tiny[2]))


@pytest.mark.parametrize("damage", ["missing_tokenizer", "no_manifest", "same_size_bytes"])
def test_damaged_or_half_present_entry_is_rebuilt(tiny, damage):
    entry = _entry(tiny)
    if damage == "missing_tokenizer":
        (entry / "tokenizer.json").unlink()
        expected = "tokenizer.json is missing"
    elif damage == "no_manifest":
        (entry / "personas-gguf.json").unlink()
        expected = "half-present"
    else:
        weights = entry / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
        expected = "model.safetensors does not match its checksum"
        assert verify_cache_entry(entry) and verify_cache_entry(entry, full=False)
    with pytest.warns(ModelNote, match=expected):
        load_model(str(tiny[0]), cache_dir=tiny[1], progress=False)
    assert verify_cache_entry(entry) == []


def test_leftovers_of_a_killed_build_are_cleaned(tiny):
    from deepscan.locking import FileLock

    work = tiny[1] / "gguf"
    stale_dir = work / f".{'a' * 64}.deadbeef.tmp"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"half")
    stale_file = work / f".{'b' * 64}.c0ffee.tmp"
    stale_file.write_bytes(b"half an assembled gguf")
    running = work / f".{'c' * 64}.1234.tmp"  # a build running now (its lock is held) is left alone
    running.mkdir()
    legacy_old, legacy_new = work / f".{'d' * 16}.x1y2.tmp", work / f".{'e' * 16}.x1y2.tmp"  # older versions' work
    legacy_old.mkdir()
    legacy_new.mkdir()
    os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))  # untouched for 2 hours: stale
    lock = FileLock(work / f".{'c' * 64}.lock", "a build")
    try:
        _load_quiet(tiny)
    finally:
        lock.release()
    assert not stale_dir.exists() and not stale_file.exists() and running.exists()
    assert not legacy_old.exists() and legacy_new.exists()  # a recent one may still be written
    _load_quiet(tiny)
    assert not running.exists()


def test_cache_folder_that_is_a_file_is_an_error_before_any_work(tiny, tmp_path):
    not_a_dir = tmp_path / "cache-file"
    not_a_dir.write_text("x")
    start = time.perf_counter()
    with pytest.raises(NotADirectoryError, match=r"cache-file is a file"):
        load_model(str(tiny[0]), cache_dir=not_a_dir, progress=False)
    with pytest.raises(NotADirectoryError, match="is a file"):
        load_model(str(tiny[0]), cache_dir=not_a_dir / "sub", progress=False)
    assert time.perf_counter() - start < 10


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_cache_folder_is_an_error_when_an_entry_must_be_built(tiny, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="read-only"):
            load_model(str(tiny[0]), cache_dir=ro, progress=False)
    finally:
        ro.chmod(0o755)


def test_digest_index_is_not_fooled_by_a_same_size_file_with_its_old_mtime(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"a" * 1000)
    first = indexed_sha256(f, tmp_path / "cache")
    st = f.stat()
    time.sleep(0.01)
    f.write_bytes(b"b" * 1000)  # same size, same inode
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # the old mtime restored
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert indexed_sha256(f, tmp_path / "cache") == hashlib.sha256(b"b" * 1000).hexdigest() != first


def test_quick_digest_samples_large_files(tmp_path):
    big = tmp_path / "big.bin"
    size = (32 << 20) + 4096
    with open(big, "wb") as fh:
        fh.truncate(size)
    before = quick_sha256(big)
    with open(big, "r+b") as fh:
        fh.seek(size - 10)  # inside the last MiB, always read
        fh.write(b"x")
    assert quick_sha256(big) != before
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert quick_sha256(small) == hashlib.sha256(b"abc").hexdigest()


def test_truncated_gguf_is_a_clear_error_within_seconds(tiny, tmp_path):
    data = tiny[0].read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 1000])
    start = time.perf_counter()
    for call in (lambda: check_model_source(str(cut)), lambda: load_model(str(cut), cache_dir=tmp_path / "c")):
        with pytest.raises(GGUFError, match=r"cut\.gguf is truncated \(an incomplete download or copy\?\)"):
            call()
    header_cut = tmp_path / "header-cut.gguf"
    header_cut.write_bytes(data[:300])
    with pytest.raises(GGUFError, match="header-cut.gguf is truncated"):
        check_model_source(str(header_cut))
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "c" / "gguf").exists() or not any((tmp_path / "c" / "gguf").iterdir())
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(GGUFError, match=r"fake\.gguf is not a GGUF file"):
        check_model_source(str(fake))


def test_model_sources_are_checked_and_named(tiny, tmp_path):
    src = check_model_source(str(tiny[0]))
    assert (src.kind, src.display_name, src.path) == ("gguf", "tiny-llama.F32.gguf", tiny[0].resolve())
    assert check_model_source("smollm2-135m-instruct").kind == "package"
    assert check_model_source("gemma-3-270m").display_name == "gemma-3-270m"
    assert check_model_source("all-MiniLM-L6-v2").kind == "encoder-package"
    hub = check_model_source("meta-llama/Meta-Llama-3-8B-Instruct")
    assert (hub.kind, hub.display_name, hub.path) == ("hub", "meta-llama/Meta-Llama-3-8B-Instruct", None)
    folder = tmp_path / "my-checkpoint"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"my-checkpoint holds no config\.json"):
        check_model_source(str(folder))
    (folder / "config.json").write_text("{}")
    assert check_model_source(str(folder) + os.sep).display_name == "my-checkpoint"
    assert display_name(str(folder)) == "my-checkpoint" and display_name("org/name") == "org/name"
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf does not exist"):
        check_model_source(str(tmp_path / "missing.gguf"))


@pytest.mark.parametrize("name", ["smollm2-135m-instruc", "gpt-5", "/no/such/folder", "a/b/c"])
def test_unknown_model_name_is_an_error_listing_the_aliases(name):
    with pytest.raises(ValueError) as err:
        check_model_source(name)
    message = str(err.value)
    assert repr(name) in message and all(alias in message for alias in MODEL_ALIASES)
    if name == "smollm2-135m-instruc":
        assert "Did you mean 'smollm2-135m-instruct'" in message
    with pytest.raises(ValueError, match="Aliases"):
        load_model(name)


def test_a_path_is_shown_by_its_name_and_identified_in_full(tiny, tmp_path):
    from tiny_models import make_model, make_tokenizer

    model, _ = _load_quiet(tiny)
    info = model_info(model)
    sha = hashlib.sha256(tiny[0].read_bytes()).hexdigest()
    assert info["model"] == "tiny-llama.F32.gguf" and info["model_source"] == str(tiny[0])
    assert info["model_path"] == str(tiny[0].resolve()) and info["model_sha256"] == info["gguf_sha256"] == sha
    folder = tmp_path / "llama-small"
    make_model("llama").save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    loaded, _ = load_model(str(folder), cache_dir=tiny[1], progress=False)
    info = model_info(loaded)
    assert info["model"] == "llama-small" and info["model_path"] == str(folder.resolve())
    # the folder's digest is the activation store's own local-sha256 fingerprint recipe
    fingerprint = loaded.personas_source.pop("fingerprint")
    assert fingerprint == f"local-sha256:{info['model_sha256']}" == model_fingerprint(loaded)


def test_reports_show_a_path_model_by_its_name(tmp_path):
    from personas._core.io import write_json
    from personas.report import build_comparison_report, build_report

    gguf = tmp_path / "models" / "my-model.Q4_K_M.gguf"  # need not exist where the report is read
    write_json(tmp_path / "study.json", {"parameters": {"model_name": str(gguf)}})
    text = build_report(tmp_path)
    assert text.splitlines()[2].startswith("Model `my-model.Q4_K_M.gguf`; written by")
    assert f"| model_name | {gguf} |" in text  # the configuration keeps the full path
    folder = tmp_path / "checkpoints" / "llama-ft"
    folder.mkdir(parents=True)
    text = build_comparison_report(tmp_path, {str(folder): tmp_path / "a", "org/name": tmp_path / "b"})
    assert "- `llama-ft`: [a/report.md]" in text and "- `org/name`: [b/report.md]" in text


def test_the_study_checks_the_model_before_anything_runs(tmp_path, capsys):
    from personas.study import check_inputs, run_studies
    from personas.study.cli import main

    with pytest.raises(ValueError, match=r"model 'smollm2-135m' is not a known alias.*Did you mean"):
        check_inputs({"model_name": "smollm2-135m"})
    with pytest.raises(SystemExit):
        main(["--model", "smollm2-135m-instruct,no-such-model", "--output", str(tmp_path), "--quick"])
    assert "'no-such-model' is not a known alias" in capsys.readouterr().err
    with pytest.raises(ValueError, match="'gpt-9' is not a known alias"):
        run_studies(["smollm2-135m-instruct", "gpt-9"], {"out_dir": str(tmp_path)})
    assert not any(tmp_path.iterdir())  # nothing written


def test_an_encoder_asked_for_its_lm_head_is_loaded_without_one():
    """MiniLM with head=True: transformers would bolt on a random LM head; we load the encoder and say so."""
    from personas._core.notes import ModelNote
    from personas.model.loading import load_model

    with pytest.warns(ModelNote, match="bidirectional encoder"):
        model, _ = load_model("all-MiniLM-L6-v2", head=True, progress=False)
    assert type(model).__name__ == "BertModel" and model.get_output_embeddings() is None
