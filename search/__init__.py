"""The platform: study configs, search space, objective, MLflow tracking, workers, export, report, CLI."""
