"""The notebooks use only the notebook API: the three facades and ``deepscan``.

Static checks on the notebooks' code cells (no execution): every import of project code
goes through ``utils_layers``, ``utils_nodes``, ``utils_viz`` or ``deepscan``, and every
attribute taken from a facade is one it lists in ``__all__``; and each facade's
``__all__`` names objects defined in the ``personas`` module its import line names.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("*.ipynb"))
FACADES = ("utils_layers", "utils_nodes", "utils_viz")
ALLOWED_PROJECT = set(FACADES) | {"deepscan"}
PROJECT_TOPS = {"personas", "deepscan", "benchmarks", "tests", *FACADES}


def _code(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    # IPython magics and shell lines are not Python; the notebooks have none, but stay robust
    lines = [
        line for c in nb.cells if c.cell_type == "code"
        for line in c.source.splitlines() if not line.lstrip().startswith(("%", "!"))
    ]
    return "\n".join(lines)


def _imports(tree: ast.AST) -> list[tuple[str, str | None]]:
    """(module, alias) of every import statement."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, a.asname or a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out += [(node.module or "", None)]
    return out


def test_there_are_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == [
        "representation_extraction.ipynb", "run_deepscan.ipynb", "vis_top_nodes.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_import_project_code_only_from_facades(path):
    tree = ast.parse(_code(path))
    bad = []
    for module, alias in _imports(tree):
        top = module.split(".")[0]
        if top in PROJECT_TOPS and module not in ALLOWED_PROJECT:
            bad.append(module)
        if module in FACADES and alias is None:
            bad.append(f"from {module} import ...")  # facades are used as modules (ul.X), never unpacked
    assert not bad, f"{path.name} imports {bad}; import only {sorted(ALLOWED_PROJECT)} (as modules)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_use_only_names_the_facades_list(path):
    tree = ast.parse(_code(path))
    aliases = {alias: module for module, alias in _imports(tree) if module in FACADES}
    used = {
        (aliases[node.value.id], node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
    }
    assert used, f"{path.name} uses no facade"
    missing = sorted(f"{m}.{name}" for m, name in used if name not in importlib.import_module(m).__all__)
    assert not missing, f"{path.name} uses {missing}, which the facades do not list in __all__"


@pytest.mark.parametrize("facade", FACADES)
def test_facade_is_explicit_and_every_name_resolves_to_its_defining_module(facade):
    path = ROOT / f"{facade}.py"
    tree = ast.parse(path.read_text())
    imported: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            assert all(a.name != "*" for a in node.names), f"{facade} star-imports {node.module}"
            for a in node.names:
                imported[a.asname or a.name] = node.module
    mod = importlib.import_module(facade)
    assert len(mod.__all__) == len(set(mod.__all__)), "duplicates in __all__"
    # __all__ lists exactly the names imported (nothing hidden, nothing unlisted)
    assert sorted(mod.__all__) == sorted(imported)
    for name in mod.__all__:
        source = sys.modules[imported[name]]
        assert getattr(mod, name) is getattr(source, name)
        obj = getattr(mod, name)
        # functions and classes: the line names the package that holds the code (one hop)
        if callable(obj) and hasattr(obj, "__module__"):
            assert obj.__module__.startswith(imported[name]), (name, obj.__module__, imported[name])


def test_facades_do_not_share_names():
    seen: dict[str, str] = {}
    for facade in FACADES:
        for name in importlib.import_module(facade).__all__:
            assert name not in seen, f"{name} is in both {seen[name]} and {facade}: one public path per function"
            seen[name] = facade


def test_committed_notebooks_carry_no_outputs():
    """The notebooks are stored clean: every code cell without outputs or an execution count (README)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name in ("representation_extraction.ipynb", "run_deepscan.ipynb", "vis_top_nodes.ipynb"):
        cells = json.loads((root / name).read_text(encoding="utf-8"))["cells"]
        dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code"
                 and (c.get("outputs") or c.get("execution_count") is not None)]
        assert not dirty, f"{name}: cells {dirty} carry outputs; clear them before committing"
