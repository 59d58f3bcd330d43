"""Shared fixtures: the embedded sample corpus and the real media in $TALKBENCH_SHARED_DATA.

A test that reads real media requests the ``shared_data`` fixture (never the variable or a
path of its own) and carries ``@pytest.mark.shared_data``; collection fails when the two
disagree, so ``-m "not shared_data"`` selects exactly the tests that run without it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Analyses the tests make go to a folder of this run, never the user's cache.
os.environ.setdefault("TALKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="talkbench-test-cache-"))

# Under pytest-xdist each worker gets its share of the cores for torch/OpenMP (set before any
# test imports torch; subprocesses inherit it), so N workers do not run N x cores threads.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, str(_threads))


def shared_data_dir() -> Path | None:
    value = os.environ.get("TALKBENCH_SHARED_DATA")
    if not value or not Path(value).is_dir():
        return None
    return Path(value)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real public media; skips the test when the variable is unset."""
    root = shared_data_dir()
    if root is None:
        pytest.skip("TALKBENCH_SHARED_DATA is not set (real media not available)")
    return root


@pytest.fixture(scope="session")
def sample_clips():
    from talkbench.samples import load_sample_corpus

    return load_sample_corpus()


def shared_data_marker_problems(items) -> list[str]:
    """Tests whose use of the ``shared_data`` fixture (directly or through other fixtures) and
    ``shared_data`` marker disagree."""
    problems = []
    for item in items:
        uses = "shared_data" in getattr(item, "fixturenames", ())
        marked = item.get_closest_marker("shared_data") is not None
        if uses and not marked:
            problems.append(f"{item.nodeid}: requests the shared_data fixture without @pytest.mark.shared_data")
        elif marked and not uses:
            problems.append(f"{item.nodeid}: carries @pytest.mark.shared_data but does not request the shared_data fixture")
    return problems


_MARKER_PROBLEM = pytest.StashKey[str]()


# Modules that take minutes (the demo alone ~5 on 2 cores) start first, so that under
# pytest-xdist the workers finish together instead of one running the demo at the end.
LONGEST_FIRST = ("tests/test_demo.py", "tests/metrics/test_engine_parallel.py", "tests/metrics/test_engine.py",
                 "tests/datasets/test_resume.py", "tests/datasets/test_language.py", "tests/datasets/test_audit.py")


def _longest_first(item) -> int:
    path = item.nodeid.split("::")[0]
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(config, items):
    items.sort(key=_longest_first)  # stable: the order within a module is kept
    problems = shared_data_marker_problems(items)
    if not problems:
        return
    message = ("a test that reads real media requests the `shared_data` fixture and carries "
               "@pytest.mark.shared_data:\n  " + "\n  ".join(problems))
    if not hasattr(config, "workerinput"):
        raise pytest.UsageError(message)
    # Under pytest-xdist collection runs in the workers, where a UsageError only crashes the
    # worker without a word: there every offending test errors in setup with the reason.
    for item in items:
        problem = shared_data_marker_problems([item])
        if problem:
            item.stash[_MARKER_PROBLEM] = problem[0]


@pytest.hookimpl(tryfirst=True)  # before the fixtures, whose skip would hide it
def pytest_runtest_setup(item):
    problem = item.stash.get(_MARKER_PROBLEM, None)
    if problem:
        pytest.fail(problem, pytrace=False)
