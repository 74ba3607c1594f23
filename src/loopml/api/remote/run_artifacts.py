"""A model fitted on this machine, saved as an output of a run recorded on a team server.

The model is saved here, into the local cache, as loopml saves any model; its tree is
uploaded (only the files the server lacks), and the server checks the tree as a load
would before it records it as the run's ``model`` output (``POST /runs/{id}/models``).
The data a model was fitted on stays here: only its digest and shape are sent
(``POST /runs/{id}/training-data``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from loopml.api.remote.artifacts import cache_store, upload_tree
from loopml.api.remote.connection import Connection

if TYPE_CHECKING:
    from loopml.api.autolog.data import DataDigest


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


def log_training_data(connection: Connection, run_id: str, d: DataDigest, role: str) -> str:
    """Send a fit's data digest and shape (never the data) to be recorded as an input of
    the run, as a local fit records it; the training-data artifact's id."""
    body = {
        "content_digest": d.digest,
        "rows": d.rows,
        "columns": d.columns,
        "has_target": d.has_target,
        "role": role,
    }
    found = connection.post_json(f"/runs/{quote(run_id, safe='')}/training-data", body)
    return str(found["id"])
