"""The fluent Python API: resolves the workspace from configuration, then delegates."""
