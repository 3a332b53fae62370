"""One trial's life (start, train, record) and one training run."""
