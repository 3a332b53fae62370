"""A study: its storage, services, samplers, opening, workers, progress and final run."""
