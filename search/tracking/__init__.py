"""The one owner of MLflow: the retrying client, runs, names, datasets, system metrics."""
