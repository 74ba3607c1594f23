"""Persistence: the metadata store, the artifact store, lineage, and the workspace tying them."""
