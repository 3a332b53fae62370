"""Shared test settings."""

import torch

# The test machines have few (and shared) cores: one intra-op thread is faster for the tiny models
# of the tests and avoids oversubscription when several processes run at once.
torch.set_num_threads(1)
