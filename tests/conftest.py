"""Shared test settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

# The test machines have few (and shared) cores: one intra-op thread is faster for the tiny models
# of the tests and avoids oversubscription when several processes run at once.
torch.set_num_threads(1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """A test on the SLURM cluster has its one small node to itself (``slurm_helpers.node_to_myself``):
    another test's jobs would hold the CPUs its own jobs wait for. Tests without SLURM run as usual."""
    if "slurm_cluster" not in getattr(item, "fixturenames", ()):
        return (yield)
    import slurm_helpers

    with slurm_helpers.node_to_myself():
        return (yield)


@pytest.fixture(autouse=True)
def _sys_path_restored() -> Iterator[None]:
    """Loading an exported model (``mlflow.pyfunc.load_model``) puts its ``code/`` folder first on
    ``sys.path`` for good; a later test of the same pytest worker that spawns processes would have
    them import that model's old copy of ``core`` and ``search``. Each test starts from the
    worker's own path."""
    import sys

    saved = list(sys.path)
    yield
    sys.path[:] = saved
