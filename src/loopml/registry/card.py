"""A Markdown model card per version: what it is, what it was trained on, how it scores."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from loopml.core.clock import format_ts
from loopml.registry.evaluation import EVALUATION_KIND, EvaluationResult, load_evaluation
from loopml.registry.model_registry import ModelVersion, Registry
from loopml.store.metadata.tables import artifacts, events
from loopml.store.workspace import Workspace


def latest_evaluation(ws: Workspace, mv: ModelVersion) -> EvaluationResult | None:
    """The most recent stored evaluation of this version, if any."""
    evaluation_executions = (
        select(events.c.execution_id)
        .where(events.c.artifact_id == mv.artifact_id, events.c.type == "input")
        .scalar_subquery()
    )
    q = (
        select(artifacts.c.digest)
        .join(events, events.c.artifact_id == artifacts.c.id)
        .where(
            artifacts.c.kind == EVALUATION_KIND,
            events.c.type == "output",
            events.c.execution_id.in_(evaluation_executions),
        )
        .order_by(artifacts.c.created_at.desc())
        .limit(1)
    )
    with ws.engine.connect() as conn:
        digest = conn.execute(q).scalar()
    return None if digest is None else load_evaluation(ws.artifacts, digest)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def render_card(ws: Workspace, name: str, version: int) -> str:
    registry = Registry(ws)
    mv = registry.get_version(name, version)
    meta = registry.metadata(mv)
    sig = mv.signature
    out = [f"# Model card: {mv.ref}", ""]
    if mv.description:
        out += [mv.description, ""]
    out += _table(
        ["field", "value"],
        [
            ["flavor", mv.flavor],
            ["task", sig.output.task],
            ["classes", ", ".join(map(str, sig.output.classes or ())) or "-"],
            ["registered", format_ts(mv.created_at)],
            ["aliases", ", ".join(mv.aliases) or "-"],
            ["digest", f"`{mv.digest}`"],
            ["tags", ", ".join(f"{k}={v}" for k, v in mv.tags.items()) or "-"],
        ],
    )
    out += ["## Lineage", ""]
    out += _table(
        ["what", "id"],
        [
            ["run", mv.run_id or "-"],
            ["code version", mv.code_version or "-"],
            *[["dataset", d] for d in mv.dataset_artifact_ids],
        ],
    )
    out += ["## Data (input signature)", ""]
    out += _table(
        ["column", "type", "nullable", "categories"],
        [
            [
                c.name,
                c.type,
                "yes" if c.nullable else "no",
                ", ".join(map(str, (c.categories or ())[:10]))
                + (" ..." if len(c.categories or ()) > 10 else ""),
            ]
            for c in sig.inputs
        ],
    )
    out += ["## Parameters", ""]
    params = sorted(meta.params.items())
    out += _table(["parameter", "value"], [[k, v] for k, v in params]) if params else ["-", ""]
    evaluation = latest_evaluation(ws, mv)
    out += ["## Metrics", ""]
    if evaluation is None:
        out += ["No evaluation recorded yet.", ""]
    else:
        out += [f"On {evaluation.n_rows:,} rows, target `{evaluation.target}`.", ""]
        out += _table(["metric", "value"], [[k, v] for k, v in sorted(evaluation.metrics.items())])
        for column, slices in evaluation.slices.items():
            metric_names = sorted({k for s in slices for k in s.metrics})[:6]
            out += [f"### Slices by `{column}`", ""]
            out += _table(
                [column, "rows", *metric_names],
                [
                    [
                        s.value,
                        s.n,
                        *[
                            s.metrics.get(m) if s.metrics.get(m) is not None else "-"
                            for m in metric_names
                        ],
                    ]
                    for s in slices
                ],
            )
        if evaluation.confusion_matrix is not None and evaluation.labels is not None:
            out += ["### Confusion matrix (rows: actual, columns: predicted)", ""]
            out += _table(
                ["", *map(str, evaluation.labels)],
                [
                    [str(lab), *row]
                    for lab, row in zip(evaluation.labels, evaluation.confusion_matrix, strict=True)
                ],
            )
    history = [
        e for e in registry.history(name) if e.to_version == version or e.from_version == version
    ]
    out += ["## Alias history", ""]
    out += (
        _table(
            ["time", "alias", "action", "from", "to", "allowed", "reason"],
            [
                [
                    format_ts(e.created_at),
                    e.alias,
                    e.action,
                    e.from_version or "-",
                    e.to_version or "-",
                    "yes" if e.allowed else "no",
                    e.reason,
                ]
                for e in history
            ],
        )
        if history
        else ["No alias has pointed at this version.", ""]
    )
    out += ["## Package versions", ""]
    out += _table(["package", "version"], [[k, v] for k, v in sorted(meta.packages.items())])
    return "\n".join(out)
