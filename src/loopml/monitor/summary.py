"""What the monitor keeps of logged rows: mergeable summaries per model version and UTC day.

A summary holds the profiles of a part's inputs and outputs and the validation counts of
its inputs against the training schema; segments, windows and histories merge them and
never go back to the rows. The server's log writer summarises each file as it writes it
(``summarise_file``) and stores the result beside the file, so the monitor only merges
(``read_file_summary``); a file without one, or summarised against another schema than
the monitor's, is summarised from its rows by the same function at ingest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from loopml.core.errors import LoopmlError
from loopml.core.hashing import digest_bytes
from loopml.data.profile import Profile, merge_all, profile
from loopml.data.schema import Schema
from loopml.data.validate import Anomaly, validate
from loopml.monitor.logs import EVENT_TIME
from loopml.monitor.scores import output_table

DAY = 86_400.0
SUMMARY_FORMAT = "loopml.monitor_segment/1"
FILE_SUMMARY_FORMAT = "loopml.monitor_file_summary/1"
# The artifact property of a prediction-log file naming its summary blob.
SUMMARY_PROPERTY = "summary_digest"
log = logging.getLogger("loopml.monitor")


@dataclass(frozen=True)
class Summary:
    """What a segment (or a merge of segments) knows without its rows."""

    rows: int
    inputs: Profile
    outputs: Profile
    anomalies: tuple[Anomaly, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SUMMARY_FORMAT,
            "rows": self.rows,
            "inputs": self.inputs.to_dict(),
            "outputs": self.outputs.to_dict(),
            "anomalies": [a.to_dict() for a in self.anomalies],
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Summary:
        return cls(
            int(d["rows"]),
            Profile.from_dict(d["inputs"]),
            Profile.from_dict(d["outputs"]),
            tuple(Anomaly.from_dict(a) for a in d["anomalies"]),
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Summary:
        return cls.from_dict(json.loads(raw))

    @classmethod
    def merge(cls, parts: Sequence[Summary]) -> Summary:
        if len(parts) == 1:
            return parts[0]
        inputs, outputs = (
            merge_profiles([p.inputs for p in parts]),
            merge_profiles([p.outputs for p in parts]),
        )
        assert inputs is not None and outputs is not None
        return cls(sum(p.rows for p in parts), inputs, outputs, merge_anomalies(parts))


def merge_profiles(profiles: Sequence[Profile]) -> Profile | None:
    """Merge on the columns every profile has (a signature may gain a column)."""
    if not profiles:
        return None
    if len(profiles) == 1:
        return profiles[0]
    common = [c for c in profiles[0].columns if all(c in p.columns for p in profiles)]
    trimmed = [Profile(p.num_rows, {c: p.columns[c] for c in common}, p.hash_id) for p in profiles]
    return merge_all(trimmed)


def merge_anomalies(summaries: Sequence[Summary]) -> tuple[Anomaly, ...]:
    merged: dict[tuple[str, str | None, str], Anomaly] = {}
    for s in summaries:
        for a in s.anomalies:
            key = (a.kind, a.column, a.severity)
            prev = merged.get(key)
            if prev is None:
                merged[key] = a
                continue
            count = (
                None
                if prev.count is None and a.count is None
                else (prev.count or 0) + (a.count or 0)
            )
            examples = tuple(dict.fromkeys(prev.examples + a.examples))[:5]
            merged[key] = Anomaly(
                a.kind,
                a.severity,
                a.column,
                f"{a.kind} in column {a.column!r}: {count} row(s) in the window"
                if a.column
                else prev.message,
                count,
                examples,
            )
    return tuple(merged.values())


def rows_of(df: pl.DataFrame) -> pl.DataFrame:
    """Log rows with ``t``, the event time (else answer time) in epoch seconds, and its day;
    shadow answers left out (no client saw them)."""
    answered = pl.col("timestamp").dt.epoch("us").cast(pl.Float64) / 1e6
    if EVENT_TIME in df.columns:
        t = pl.coalesce(pl.col(EVENT_TIME).dt.epoch("us").cast(pl.Float64) / 1e6, answered)
    else:
        t = answered
    if "role" in df.columns:
        df = df.filter(pl.col("role") != "shadow")
    return df.with_columns(t=t, bucket=(t / DAY).floor() * DAY)


PartKey = tuple[str, int, float]  # (model, version, day)


def one_group(df: pl.DataFrame, keys: list[str]) -> bool:
    """Whether every row has the same ``keys`` (cheaper than ``n_unique`` over them: one
    min/max pass)."""
    spans = df.select(
        *(pl.col(k).min().alias(f"{k}:lo") for k in keys),
        *(pl.col(k).max().alias(f"{k}:hi") for k in keys),
    ).row(0)
    n = len(keys)
    return all(spans[i] == spans[i + n] for i in range(n))


def groups(df: pl.DataFrame, keys: list[str]) -> list[tuple[tuple[Any, ...], pl.DataFrame]]:
    """``df`` split by ``keys``, in order of appearance; no copy when it is one group."""
    if df.height == 0:
        return []
    if one_group(df, keys):
        first = df.row(0, named=True)
        return [(tuple(first[k] for k in keys), df)]
    return [(tuple(k), part) for k, part in df.group_by(keys, maintain_order=True)]


def summarise(part: pl.DataFrame, schema: Schema | None) -> Summary:
    """The summary of rows (as ``rows_of`` gives them) of one model version."""
    inputs = part.select(pl.col("inputs").struct.unnest())
    outputs = output_table(part).with_columns(part["latency_ms"])
    anomalies: tuple[Anomaly, ...] = ()
    if schema is not None:
        anomalies = validate(inputs, schema).anomalies
    return Summary(
        part.height, profile(inputs, distinct=False), profile(outputs, distinct=False), anomalies
    )


def schema_key(schema: Schema | None) -> str | None:
    """Which schema anomalies were counted against (a summary made against another one is
    not reused)."""
    if schema is None:
        return None
    return digest_bytes(json.dumps(schema.to_dict(), sort_keys=True, default=str).encode())


SchemaOf = Callable[[str, int], Schema | None]


def summarise_file(df: pl.DataFrame, schema_of: SchemaOf) -> bytes:
    """One log file's summaries, by model version and day, as stored beside the file."""
    rows = rows_of(df)
    parts = []
    for (model, version, bucket), part in groups(rows, ["model", "model_version", "bucket"]):
        schema = schema_of(str(model), int(version))
        parts.append(
            {
                "model": str(model),
                "version": int(version),
                "bucket": float(bucket),
                "schema": schema_key(schema),
                "summary": summarise(part, schema).to_dict(),
            }
        )
    doc = {"format": FILE_SUMMARY_FORMAT, "parts": parts}
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()


def read_file_summary(raw: bytes, schema_of: SchemaOf) -> dict[PartKey, Summary] | None:
    """A stored file summary, or None where it cannot be used as it is (another format, or
    anomalies counted against another schema than ``schema_of`` gives now)."""
    try:
        doc = json.loads(raw)
        if doc.get("format") != FILE_SUMMARY_FORMAT:
            return None
        out: dict[PartKey, Summary] = {}
        keys: dict[tuple[str, int], str | None] = {}
        for p in doc["parts"]:
            model, version = str(p["model"]), int(p["version"])
            if (model, version) not in keys:
                keys[(model, version)] = schema_key(schema_of(model, version))
            if p["schema"] != keys[(model, version)]:
                return None
            out[(model, version, float(p["bucket"]))] = Summary.from_dict(p["summary"])
        return out
    except (ValueError, KeyError, TypeError, AttributeError, LoopmlError) as exc:
        log.warning("a stored log summary is unreadable (%s); summarising its rows", exc)
        return None
