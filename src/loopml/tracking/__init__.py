"""Experiment tracking: runs with params, metrics, tags, artifacts and environment."""
