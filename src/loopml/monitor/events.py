"""Named events for the pipeline scheduler, recorded in its events table.

Monitoring sits beside pipelines (neither imports the other); both agree on the stored
event rows: a scheduler's event schedules run their pipeline when an event with their
name is recorded after their cursor. Same name rule as ``pipelines.schedules``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert

from loopml.core import clock
from loopml.core.errors import InvalidInputError
from loopml.store.metadata.tables import pipeline_events
from loopml.store.workspace import Workspace

EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,249}")


def check_event_name(name: object) -> str:
    if not isinstance(name, str) or not EVENT_NAME.fullmatch(name):
        raise InvalidInputError(
            f"{name!r} is not a valid event name: letters, digits, '.', '_', ':' and '-'"
        )
    return name


def fire(ws: Workspace, name: str, payload: Mapping[str, Any] | None = None) -> int:
    """Record event ``name`` with a JSON payload; returns its id."""
    check_event_name(name)
    body = json.loads(json.dumps(dict(payload or {}), default=str))
    with ws.write_engine.begin() as conn:
        result = conn.execute(
            insert(pipeline_events).values(name=name, payload=body, created_at=clock.now())
        )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])
