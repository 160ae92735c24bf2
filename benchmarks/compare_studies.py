"""Compare two study folders, file by file: byte for byte, and JSON / JSONL with the volatile fields set aside.

    uv run python benchmarks/compare_studies.py output-before/smoke output-after/smoke

How "nothing changes in results" is checked after a refactoring: run the quick study before and after
on the same machine, then compare. Volatile fields (``VOLATILE``: timestamps, seconds, package versions,
phase timings) and each folder's own path (a study records where its run files are) are set aside;
executed notebooks are left out (they hold timings). Tables (CSV) must be identical bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

VOLATILE = frozenset({"created", "seconds", "timings_s", "cpu_seconds", "versions", "phases", "write_id"})


def _normalised(obj: Any, root: Path) -> Any:
    if isinstance(obj, dict):
        return {k: _normalised(v, root) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_normalised(v, root) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(root.parent), "<output>")
    return obj


def _load(path: Path, root: Path) -> Any:
    if path.suffix == ".jsonl":
        return [_normalised(json.loads(line), root) for line in path.read_text().splitlines() if line.strip()]
    return _normalised(json.loads(path.read_text()), root)


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and "notebooks" not in p.parts}


def compare(a: Path, b: Path) -> dict[str, list[str]]:
    """``{"identical": [...], "same_once_normalised": [...], "differ": [...], "only_a": [...], "only_b": [...]}``."""
    fa, fb = _files(a), _files(b)
    out: dict[str, list[str]] = {"identical": [], "same_once_normalised": [], "differ": [],
                                 "only_a": sorted(set(fa) - set(fb)), "only_b": sorted(set(fb) - set(fa))}
    for rel in sorted(set(fa) & set(fb)):
        if fa[rel].read_bytes() == fb[rel].read_bytes():
            out["identical"].append(rel)
        elif fa[rel].suffix in (".json", ".jsonl") and _load(fa[rel], a) == _load(fb[rel], b):
            out["same_once_normalised"].append(rel)
        else:
            out["differ"].append(rel)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    result = compare(args.a, args.b)
    print(f"identical bytes: {len(result['identical'])}; identical once volatile fields are set aside: "
          f"{len(result['same_once_normalised'])}; differ: {len(result['differ'])}")
    for key in ("differ", "only_a", "only_b"):
        for rel in result[key]:
            print(f"  {key}: {rel}")


if __name__ == "__main__":
    main()
