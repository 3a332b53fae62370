"""What a run and a study are asked to do: the run config, the study file, the search space."""
