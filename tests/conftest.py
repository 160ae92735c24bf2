"""Shared test settings: offline Hugging Face, headless matplotlib."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

# Under pytest-xdist: the cores shared out among the workers (torch's, BLAS's and, through the environment, the
# study's kernels' threads), set before torch is imported. More threads than cores make every parallel region
# wait for a thread that is not running: two workers of two threads each on two cores ran the suite slower
# than one process.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in THREAD_VARIABLES:
        os.environ.setdefault(_var, _threads)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab in headless Chromium (deselect with -m 'not browser')"
    )


# The module that reads the shared quick study (the session fixture ``quick_study`` below), and the module the
# other worker starts with.
STUDY_MODULE = "test_study.py"
FIRST_ON_THE_OTHER = "test_jupyterlab_browser.py"


def pytest_collection_modifyitems(config, items):
    """For pytest-xdist's ``--dist loadfile`` (pyproject's addopts; each module stays on one worker, so its
    fixtures are built once): the quick study's module first, the longest piece of work, and the browser tests,
    the next longest, second, so the other worker starts with them (``--no-loadscope-reorder`` keeps this
    order). Each module keeps its own order."""
    items.sort(key=lambda item: (item.path.name != STUDY_MODULE, item.path.name != FIRST_ON_THE_OTHER))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run several times faster on one thread (no oversubscription on shared cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The one end-to-end run of the study that the study tests share (a few minutes on the embedded SmolLM2):
# the quick study from the command line, with a researcher's own personas and topics and two replicates.
# Two personas (statements drawn from two bundled behaviours and renamed) join the quick study's three;
# the topics file puts both in one topic beside two of the bundled personas and leaves
# ``politically-liberal`` in none.
MINE = {"interest-in-art": "likes-galleries", "interest-in-music": "likes-concerts"}
STUDY_TOPICS = {"Leisure": ["likes-galleries", "likes-concerts"], "Personality": ["agreeableness"],
                "Ethics": ["subscribes-to-deontology"]}


@pytest.fixture(scope="session")
def quick_study(tmp_path_factory):
    """``(out, console, statements_file, topics_file, params)`` of ``python -m personas.study --quick ...``."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    import pandas as pd

    from personas.statements import load_statements
    from personas.study import study_parameters

    root_dir = Path(__file__).resolve().parent.parent
    root = tmp_path_factory.mktemp("study")
    parts = [load_statements(src, n_per_direction=50, seed=7).assign(persona=name) for src, name in MINE.items()]
    statements = root / "my_personas.csv"
    pd.concat(parts)[["persona", "direction", "statement"]].to_csv(statements, index=False)
    topics = root / "my_topics.json"
    topics.write_text(json.dumps(STUDY_TOPICS), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(root_dir), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    # every core for the study (its kernels' threads sleep rather than spin while they wait): it is the longest
    # piece of work, and it goes on alone once the other worker has run every other module
    env.update({var: str(os.cpu_count() or 1) for var in THREAD_VARIABLES}, OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run(
        [sys.executable, "-m", "personas.study", "--quick", "--statements", str(statements), "--topics", str(topics),
         "--output", str(root), "--name", "smoke", "--no-progress"],
        cwd=root_dir, env=env, capture_output=True, text=True, timeout=2400,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-4000:]
    params = study_parameters(name="smoke", output=root, quick=True, statements=statements, topics=topics)
    return SimpleNamespace(out=root / "smoke", console=console, statements=statements, topics=topics, params=params,
                           personas=list(params["personas"]))
