"""The deepscan package stays in small modules without import cycles (read from its source with ast)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import deepscan

PACKAGE = Path(deepscan.__file__).resolve().parent
MODULES = sorted(PACKAGE.glob("*.py"))
# the published keyword names of these two stay (docs/deepscan.md, section 7)
MANY_PARAMETERS_ALLOWED = {"run_experiment", "detection_power"}


def _trees():
    return {p.name: ast.parse(p.read_text(encoding="utf-8")) for p in MODULES}


def test_modules_are_small():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in MODULES}
    assert {"layout.py", "runfile.py", "published.py", "_util.py", "fingerprint.py", "_version.py"} <= set(sizes)
    assert {k: v for k, v in sizes.items() if v > 500} == {}


def test_functions_are_short_with_few_parameters():
    long, wide = [], []
    for name, tree in _trees().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
                if node.end_lineno - node.lineno + 1 > 80:
                    long.append(f"{name}:{node.name}")
                if n > 10 and node.name not in MANY_PARAMETERS_ALLOWED:
                    wide.append(f"{name}:{node.name}")
    assert long == [] and wide == []


def test_no_module_imports_the_package_or_private_names_of_another():
    problems = []
    for name, tree in _trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module is None:
                    problems.append(f"{name}: from . import ...")  # the package itself: a cycle through __init__
                if node.module and node.module.split(".")[0] == "deepscan":
                    problems.append(f"{name}: absolute import of deepscan")
                if node.level == 1 and node.module:
                    private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                    if private:
                        problems.append(f"{name}: {private} from .{node.module}")
            elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "deepscan" for a in node.names):
                problems.append(f"{name}: import deepscan")
    assert problems == []


def test_public_names_and_the_lock_personas_uses_import():
    code = ("import deepscan, deepscan.locking, deepscan.runfile as rf\n"
            "assert all(hasattr(deepscan, n) for n in deepscan.__all__)\n"
            "assert deepscan.locking.FileLock and rf.node_to_layer_unit is deepscan.node_to_layer_unit\n"
            "assert rf.package_versions()['deepscan'] == deepscan.__version__\n"
            "print(len(deepscan.__all__))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 33  # the names before the split, none lost
