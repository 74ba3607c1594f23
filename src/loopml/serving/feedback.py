"""Late ground-truth labels, keyed by the request ids the server returned.

``POST /v2/feedback`` (and ``loopml feedback``) take::

    {"labels": [{"request_id": "…", "label": 1}, {"request_id": "…", "row": 3, "label": 0}]}

``row`` picks one row of a multi-row request; without it the label applies to row 0 (a
one-row request). Labels are written synchronously: a 200 means they are stored.

Format (``loopml.prediction_feedback/1``): one Parquet blob per call, recorded as an
artifact of kind ``prediction_feedback`` with properties ``deployment``, ``rows``,
``partition`` (UTC hour), ``received_at``. Columns: ``request_id`` string, ``row`` int32,
``label`` (int64, float64, bool or string: one type per call), ``received_at``
timestamp[us, UTC]. Join with the prediction log on (request_id, row).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.monitor.logs import FEEDBACK_KIND as FEEDBACK_KIND
from loopml.serving.errors import BadRequestError, PayloadTooLargeError
from loopml.store.workspace import Workspace

FEEDBACK_FORMAT = "loopml.prediction_feedback/1"
MAX_LABELS = 100_000


@dataclass(frozen=True)
class Label:
    request_id: str
    row: int
    label: Any


def parse_labels(payload: object) -> list[Label]:
    """The labels of a feedback payload, refusing anything ambiguous with a clear message."""
    if not isinstance(payload, dict) or not isinstance(payload.get("labels"), list):
        raise BadRequestError(
            'feedback must be {"labels": [{"request_id": "...", "label": ...}, ...]}'
        )
    items = payload["labels"]
    if not items:
        raise BadRequestError("feedback has no labels")
    if len(items) > MAX_LABELS:
        raise PayloadTooLargeError(f"at most {MAX_LABELS} labels per call; split the upload")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequestError(f"labels[{i}] must be an object with request_id and label")
        rid, row, label = item.get("request_id"), item.get("row", 0), item.get("label")
        if not isinstance(rid, str) or not rid or len(rid) > 200:
            raise BadRequestError(f"labels[{i}].request_id must be a string of 1 to 200 chars")
        if not rid.isprintable():  # as every id the server hands out
            raise BadRequestError(f"labels[{i}].request_id may hold printable characters only")
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < 2**31:
            raise BadRequestError(f"labels[{i}].row must be a non-negative integer")
        if label is None or not isinstance(label, bool | int | float | str):
            raise BadRequestError(f"labels[{i}].label must be a number, boolean or string")
        if isinstance(label, float) and not math.isfinite(label):
            raise BadRequestError(f"labels[{i}].label is {label}; a label must be a finite number")
        out.append(Label(rid, row, label))
    return out


def _label_array(labels: Sequence[Any]) -> pa.Array:
    kinds = {type(v) for v in labels}
    if kinds <= {int, float} or kinds == {bool}:
        try:
            return pa.array(list(labels))
        except (pa.ArrowInvalid, OverflowError) as exc:
            raise BadRequestError(f"labels do not fit a numeric column: {exc}") from None
    if kinds == {str}:
        try:
            return pa.array(list(labels), pa.string())
        except UnicodeEncodeError:  # a lone surrogate, which json reads from "\ud800"
            raise BadRequestError("a text label is not valid Unicode") from None
    raise BadRequestError(
        f"labels mix types ({', '.join(sorted(k.__name__ for k in kinds))}); send one type"
    )


def store_labels(workspace: Workspace, deployment: str, labels: Sequence[Label]) -> str:
    """Write the labels durably; return the artifact id."""
    now = time.time()
    table = pa.table(
        {
            "request_id": pa.array([x.request_id for x in labels], pa.string()),
            "row": pa.array([x.row for x in labels], pa.int32()),
            "label": _label_array([x.label for x in labels]),
            "received_at": pa.array([int(now * 1e6)] * len(labels), pa.timestamp("us", tz="UTC")),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    blob = workspace.artifacts.put_bytes(sink.getvalue())
    partition = time.strftime("%Y-%m-%dT%H", time.gmtime(now))
    record = workspace.lineage.add_artifact(
        blob.digest,
        FEEDBACK_KIND,
        blob.size,
        name=f"{deployment}/{partition}",
        properties={
            "format": FEEDBACK_FORMAT,
            "deployment": deployment,
            "rows": table.num_rows,
            "partition": partition,
            "received_at": now,
        },
    )
    return record.id
