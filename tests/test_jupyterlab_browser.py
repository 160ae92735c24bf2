"""The three notebooks as a researcher runs them: JupyterLab in headless Chromium.

A local ``jupyter lab`` (no token, nothing fetched from outside) serves copies of
the three notebooks with quick parameters injected into their ``parameters``
cell. Playwright drives Debian's Chromium: it opens each notebook in order, runs
all cells from the Run menu, waits for the kernel to go idle, saves the notebook
from the File menu and takes a full-page screenshot
(``output/browser-test/screenshots/<notebook>.png``). The saved ``.ipynb`` is the
evidence: every code cell executed in order, no error output, figures present as
``image/png`` (none left as the text ``<Figure size ...>``, none shown twice in a
cell); the page must also show them as ``img`` elements. Run with ``-s`` to see
each notebook's run time and slowest cells (JupyterLab records cell timings).

The kernel runs in the repository root (as when a researcher opens the notebooks
there), with matplotlib's inline backend, not the Agg backend the other tests use.
Skipped when ``/usr/bin/chromium`` or the ``playwright`` package is missing
(``.ci/run`` installs Chromium where it can).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from personas.study import NOTEBOOKS, study_parameters

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DIR = REPO_ROOT / "output" / "browser-test"  # git-ignored: prepared notebooks and screenshots
NOTEBOOK_TIMEOUT_S = 900  # per notebook, on two shared cores
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Quick study, smaller still: four layers (valid for any model of 6 blocks or more), 20 statements per direction
# (the pools, clusters and untrained control sized to them), few DeepScan runs, no UMAP, no causal check (its
# model load and passes are tested by test_study; here the UI is under test), and one PCA pair grid (the quick
# study draws none).
LAYERS = [0, 2, 4, 6]
OVERRIDES = {"n_runs": 3, "umap": False, "causal": False, "n_per_direction": 20, "background_size": 10,
             "clean_size": 10, "anomalous_size": 20, "n_per_cluster": 10, "untrained_per_direction": 10,
             "pca_grid_personas": 1}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is missing (Debian package chromium; .ci/run installs it)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing (dev dependency)")


def _parameter_names(path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def _prepare(notebook: str, params: dict, dest_dir: Path) -> Path:
    """Copy of ``notebook`` with its own parameters injected (papermill, not executed) and no outputs."""
    import papermill as pm

    src = REPO_ROOT / notebook
    own = {k: v for k, v in params.items() if k in _parameter_names(src)}
    dest = dest_dir / notebook
    pm.execute_notebook(str(src), str(dest), parameters=own, prepare_only=True, cwd=str(REPO_ROOT),
                        kernel_name="python3", progress_bar=False, log_output=False)
    nb = nbformat.read(dest, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None  # the browser run must produce every output
    nbformat.write(nb, dest)
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, method: str = "GET"):
    req = urllib.request.Request(f"{base}{path}", method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def _stop(proc: subprocess.Popen) -> None:
    """Terminate, then kill if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _write_settings(settings_dir: Path) -> None:
    """JupyterLab user settings: every cell in the DOM (no windowing), cell timings saved, no news, no update check."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none", "recordTiming": True},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false", "checkForUpdates": False,
        },
    }
    for rel, value in files.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab serving the prepared notebooks, and a Chromium page factory."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    nb_dir = TEST_DIR / "notebooks"
    shots = TEST_DIR / "screenshots"
    shutil.rmtree(nb_dir, ignore_errors=True)
    shutil.rmtree(shots, ignore_errors=True)
    nb_dir.mkdir(parents=True)
    shots.mkdir(parents=True)
    params = study_parameters(quick=True, name="browser", output=tmp / "study", layers=LAYERS, **OVERRIDES)
    for notebook in NOTEBOOKS:
        _prepare(notebook, params, nb_dir)

    _write_settings(tmp / "lab-settings")
    (tmp / "config").mkdir()
    (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"jupyter_lsp": False}}}))
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel picks the inline backend, as for a researcher
    env.update({
        "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "IPYTHONDIR": str(tmp / "ipython"), "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    })
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "jupyter.log", "wb")
    server = subprocess.Popen([
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
        "--allow-root",  # CI containers run as root
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.disable_check_xsrf=True",  # lets the test delete sessions over REST
        f"--ServerApp.root_dir={nb_dir}",
        # kernels start in the repository root (the notebooks import utils_layers etc. from there)
        f"--MappingKernelManager.root_dir={REPO_ROOT}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={tmp / 'lab-settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
    ], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    playwright = context = None
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited with {server.returncode}: {(tmp / 'jupyter.log').read_text()[-3000:]}")
            try:
                _api(base, "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer on {base} within 120 s")
                time.sleep(0.5)
        playwright = sync_api.sync_playwright().start()
        context = playwright.chromium.launch_persistent_context(
            str(tmp / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield {"base": base, "context": context, "nb_dir": nb_dir, "shots": shots, "failed": [], "log": tmp / "jupyter.log"}
    finally:
        try:
            if context is not None:
                context.close()
        finally:
            if playwright is not None:
                playwright.stop()
            _stop(server)
            log.close()


def _session(base: str, notebook: str):
    return next((s for s in _api(base, "/api/sessions") if s["path"] == notebook), None)


def _prompts(page) -> list[str]:
    return page.eval_on_selector_all(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent)")


def _wait_idle(page, base: str, notebook: str, timeout: float) -> None:
    """Until the kernel is idle and no cell is queued (``[*]``), twice in a row a second apart."""
    deadline, calm = time.monotonic() + timeout, 0
    while calm < 2:
        if time.monotonic() > deadline:
            raise AssertionError(f"{notebook}: still running after {timeout:.0f} s; prompts {_prompts(page)}")
        time.sleep(1)
        session = _session(base, notebook)
        state = session["kernel"]["execution_state"] if session else None
        busy = any("*" in p for p in _prompts(page))
        calm = calm + 1 if state == "idle" and not busy else 0


def _slowest(code: list, n: int = 3) -> list[tuple[str, float]]:
    """(first line, seconds) of the ``n`` slowest cells, from the timings JupyterLab saved."""
    from datetime import datetime

    times = []
    for c in code:
        t = c.metadata.get("execution", {})
        if "iopub.execute_input" in t and "shell.execute_reply" in t:
            start, end = (datetime.fromisoformat(t[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
            times.append((c.source.splitlines()[0][:40], round((end - start).total_seconds(), 1)))
    return sorted(times, key=lambda x: -x[1])[:n]


def _menu(page, menu: str, command: str) -> None:
    """Click a main-menu entry, e.g. Run > Run All Cells (``runmenu:run-all``)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
    page.locator(f'.lm-Menu:visible li.lm-Menu-item[data-command="{command}"]').first.click()


def _screenshot(page, path: Path) -> None:
    """Whole notebook: grow the viewport to the notebook's scroll height, then capture the page."""
    scroller = "document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')"
    height = page.evaluate(f"() => {scroller}.scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 200, 16000)})
    page.wait_for_timeout(1000)  # let the layout settle
    page.evaluate(f"() => {{ {scroller}.scrollTop = 0; }}")  # Run All left it at the last cell
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab(lab, notebook):
    if lab["failed"]:
        pytest.skip(f"{lab['failed'][0]} failed; {notebook} reads its artifacts")
    lab["failed"].append(notebook)  # removed once every cell ran without error
    base, path = lab["base"], lab["nb_dir"] / notebook
    n_code = sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)
    page = lab["context"].new_page()
    try:
        page.goto(f"{base}/lab/tree/{notebook}?reset", wait_until="domcontentloaded")
        page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)
        # collapse the file browser (click its open tab): the notebook gets the page's width
        page.locator(".jp-SideBar.jp-mod-left li.lm-TabBar-tab.lm-mod-current").click()
        _wait_idle(page, base, notebook, timeout=120)  # the kernel started
        assert len(_prompts(page)) == n_code, f"{notebook}: not every code cell is in the page"

        t0 = time.monotonic()
        _menu(page, "Run", "runmenu:run-all")
        _wait_idle(page, base, notebook, timeout=NOTEBOOK_TIMEOUT_S)
        elapsed = time.monotonic() - t0
        print(f"\n{notebook}: Run All Cells finished in {elapsed:.1f} s")

        before = path.stat().st_mtime_ns
        _menu(page, "File", "docmanager:save")
        deadline = time.monotonic() + 30
        while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert path.stat().st_mtime_ns != before, f"{notebook}: File > Save did not write the notebook"
        _screenshot(page, lab["shots"] / f"{path.stem}.png")

        # the saved notebook: every cell executed, no error, figures as PNG
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        print(f"{notebook}: slowest cells {_slowest(code)}")
        errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(code)
                  for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{notebook}: error output in code cell(s) {errors}"
        unrun = [i for i, c in enumerate(code) if c.execution_count is None]
        assert not unrun, f"{notebook}: code cells {unrun} were not executed"
        counts = [c.execution_count for c in code]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), f"{notebook}: out of order {counts}"
        stderr = [c.source.splitlines()[0] for c in code for o in c.outputs
                  if o.output_type == "stream" and o.name == "stderr" and "Traceback" in o.text]
        assert not stderr, f"{notebook}: a traceback on stderr in cells starting {stderr}"
        lab["failed"].remove(notebook)  # it ran: the next notebook has its artifacts

        pngs = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
        figure_text = sum(o.get("data", {}).get("text/plain", "").startswith("<Figure size")
                          and "image/png" not in o.get("data", {}) for c in code for o in c.outputs)
        assert pngs >= 1 and not figure_text, (
            f"{notebook}: {pngs} figures as PNG, {figure_text} shown only as text '<Figure size ...>' "
            "(the inline backend never rendered them)")

        twice = [c.source.splitlines()[0] for c in code
                 if len(p := [o.data["image/png"] for o in c.outputs if "image/png" in o.get("data", {})]) != len(set(p))]
        assert not twice, f"{notebook}: the same figure shown twice in cells starting {twice}"

        # ... and the page shows them
        images = page.locator(".jp-NotebookPanel .jp-OutputArea-output img").count()
        assert images >= pngs, f"{notebook}: {pngs} PNG outputs saved but {images} img elements rendered"
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                            has_text="Traceback").count() == 0
        assert (lab["shots"] / f"{path.stem}.png").stat().st_size > 10_000
    finally:
        try:
            session = _session(base, notebook)
            if session:
                _api(base, f"/api/sessions/{session['id']}", method="DELETE")  # stops its kernel
        finally:
            page.close()
