"""A model fitted on this machine, saved as an output of a run recorded on a team server.

The model is saved here, into the local cache, as loopml saves any model; its tree is
uploaded (only the files the server lacks), and the server checks the tree as a load
would before it records it as the run's ``model`` output (``POST /runs/{id}/models``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from loopml.api.remote.artifacts import cache_store, upload_tree
from loopml.api.remote.connection import Connection


def log_model(
    connection: Connection,
    run_id: str,
    model: Any,
    X_sample: Any,
    class_name: str,
    source: str = "autolog",
) -> str:
    """Upload ``model`` (its signature from ``X_sample``) as the run's model; its artifact id."""
    from loopml.registry.artifact import save_model

    store = cache_store()
    saved = save_model(store, model, X_sample)
    upload_tree(connection, store, saved.digest)
    body = {"digest": saved.digest, "class_name": class_name, "source": source}
    found = connection.post_json(f"/runs/{quote(run_id, safe='')}/models", body)
    return str(found["id"])
