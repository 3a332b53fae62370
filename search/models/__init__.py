"""Exported models: export, registry, loading and the MLflow pyfunc wrapper."""
