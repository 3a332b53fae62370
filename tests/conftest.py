"""Shared test settings."""

from __future__ import annotations

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
