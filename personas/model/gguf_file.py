"""Read a GGUF file's header without loading it: is it whole, and what does it say?

:func:`read_gguf_header` parses the header (magic ``GGUF``, version, metadata, tensor
table) in well under a second even for a 262k-token vocabulary (``gguf.GGUFReader``
builds every metadata array and takes tens of seconds there), and checks that the
tensor data the table describes fits in the file, so a truncated download is a clear
error naming the file before anything is dequantised.

:class:`GGUFTokenizerSpec` is what the file says about its tokenizer (special token ids,
whether to add BOS/EOS, the chat template): ``personas.model.gguf_tokenizer`` makes the
tokenizer ``transformers`` builds follow it.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["GGUFError", "GGUFHeader", "GGUFTokenizerSpec", "read_gguf_header", "tokenizer_spec", "quantisation_name"]

_SUPPORTED_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
# GGUF value types: struct format of the fixed-size ones; 8 = string, 9 = array
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """A file that is not a readable, complete GGUF checkpoint; the message names the file and the fix."""


@dataclass(frozen=True)
class GGUFHeader:
    """What a GGUF file's header says.

    Attributes
    ----------
    path : Path
    version : int
        GGUF format version (2 or 3).
    n_tensors : int
    metadata : mapping
        The scalar and string metadata (``general.architecture``, ``tokenizer.ggml.bos_token_id``...);
        array values (the vocabulary, merges, scores) are left out.
    data_start, data_end : int
        Byte range the tensor data needs; ``data_end`` <= the file's size for a complete file.
    size : int
        The file's size in bytes.
    """

    path: Path
    version: int
    n_tensors: int
    metadata: Mapping[str, Any] = field(repr=False)
    data_start: int
    data_end: int
    size: int


@dataclass(frozen=True)
class GGUFTokenizerSpec:
    """The tokenizer settings a GGUF file records (``None``: the file does not say)."""

    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    unk_token_id: int | None = None
    add_bos_token: bool | None = None
    add_eos_token: bool | None = None
    chat_template: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GGUFTokenizerSpec":
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


class _Cursor:
    """Bounds-checked little-endian reads from a memory map; running off the end means truncated."""

    def __init__(self, buf, path: Path, size: int):
        self.buf, self.path, self.size, self.pos = buf, path, size, 0

    def take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > self.size:
            raise _truncated(self.path, self.size, start + max(n, 0), "its header")
        self.pos = start + n
        return start

    def unpack(self, fmt: str):
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        start = self.take(n)
        return bytes(self.buf[start:start + n]).decode("utf-8", errors="replace")

    def value(self, vtype: int):
        """A scalar or string value; arrays are skipped (returns None)."""
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype != _ARRAY:
            raise GGUFError(f"{self.path}: unknown GGUF value type {vtype} at byte {self.pos}; the file is damaged")
        etype, count = self.unpack("<I"), self.unpack("<Q")
        if etype in _SCALARS:
            self.take(count * struct.calcsize(_SCALARS[etype]))
        elif etype == _STRING:
            for _ in range(count):
                self.take(self.unpack("<Q"))
        elif etype == _ARRAY:
            for _ in range(count):
                self.value(_ARRAY)
        else:
            raise GGUFError(f"{self.path}: unknown GGUF array type {etype}; the file is damaged")
        return None


def _truncated(path: Path, size: int, needed: int, what: str) -> GGUFError:
    return GGUFError(
        f"GGUF file {path} is truncated (an incomplete download or copy?): {what} needs {needed:,} bytes, "
        f"the file has {size:,}; download or copy it again"
    )


def _tensor_bytes(path: Path, dims: list[int], ggml_type: int) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise GGUFError(f"{path}: tensor type {ggml_type} is unknown to the installed 'gguf' package; "
                        "upgrade it (pip install -U gguf)") from None
    n = 1
    for d in dims:
        n *= d
    return n // block * type_size


def read_gguf_header(path: str | os.PathLike) -> GGUFHeader:
    """Parse and check a GGUF file's header and tensor table (no tensor data is read).

    Raises
    ------
    FileNotFoundError
        No such file.
    GGUFError
        Not a GGUF file (magic), an unsupported version, a damaged header, or tensor data
        reaching past the end of the file (``"truncated"``), naming the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist (or is not a file)")
    size = path.stat().st_size
    if size < 24:
        raise _truncated(path, size, 24, "the GGUF header")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file (it starts with {bytes(buf[:4])!r}, not b'GGUF'); "
                            "pass a .gguf checkpoint, a model folder, a hub name or an alias")
        cur = _Cursor(buf, path, size)
        cur.take(4)
        version = cur.unpack("<I")
        if version not in _SUPPORTED_VERSIONS:
            raise GGUFError(f"{path}: GGUF version {version} is not supported (only {_SUPPORTED_VERSIONS}, "
                            "little-endian); convert it again with a recent llama.cpp")
        n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
        if n_tensors > size or n_kv > size:
            raise GGUFError(f"{path}: the header claims {n_tensors} tensors and {n_kv} metadata entries; "
                            "the file is damaged, download it again")
        metadata = {}
        for _ in range(n_kv):
            key = cur.string()
            value = cur.value(cur.unpack("<I"))
            if value is not None:
                metadata[key] = value
        tensor_end = 0
        for _ in range(n_tensors):
            cur.string()
            dims = [cur.unpack("<Q") for _ in range(cur.unpack("<I"))]
            ggml_type, offset = cur.unpack("<I"), cur.unpack("<Q")
            tensor_end = max(tensor_end, offset + _tensor_bytes(path, dims, ggml_type))
    align = int(metadata.get("general.alignment", _DEFAULT_ALIGNMENT)) or _DEFAULT_ALIGNMENT
    data_start = -(-cur.pos // align) * align
    data_end = data_start + tensor_end
    if data_end > size:
        raise _truncated(path, size, data_end, f"its {n_tensors} tensors")
    return GGUFHeader(path=path, version=version, n_tensors=n_tensors, metadata=metadata,
                      data_start=data_start, data_end=data_end, size=size)


def tokenizer_spec(header: GGUFHeader) -> GGUFTokenizerSpec:
    """The tokenizer settings of ``header.metadata`` (``tokenizer.ggml.*``, ``tokenizer.chat_template``)."""
    meta = header.metadata

    def as_int(key):
        value = meta.get(f"tokenizer.ggml.{key}")
        return None if value is None else int(value)

    def as_bool(key):
        value = meta.get(f"tokenizer.ggml.{key}")
        return None if value is None else bool(value)

    template = meta.get("tokenizer.chat_template")
    return GGUFTokenizerSpec(
        bos_token_id=as_int("bos_token_id"), eos_token_id=as_int("eos_token_id"),
        pad_token_id=as_int("padding_token_id"), unk_token_id=as_int("unknown_token_id"),
        add_bos_token=as_bool("add_bos_token"), add_eos_token=as_bool("add_eos_token"),
        chat_template=template if isinstance(template, str) and template else None,
    )


def quantisation_name(header: GGUFHeader) -> str | None:
    """The file type (quantisation) ``general.file_type`` names, e.g. ``"MOSTLY_Q4_K_M"``."""
    value = header.metadata.get("general.file_type")
    if value is None:
        return None
    try:
        import gguf

        return gguf.LlamaFileType(int(value)).name
    except (ImportError, ValueError):
        return f"file_type={int(value)}"
