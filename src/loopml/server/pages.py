"""The web UI: server-rendered pages (Jinja2) with charts drawn by Plotly in the browser.

Each page reads the same domain objects as the JSON API; chart data is embedded in the page
as JSON, so a page is one request plus cached static files (Plotly from the installed
``plotly`` package, no CDN).
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markdown_it import MarkdownIt

from loopml.core import clock, names
from loopml.core.errors import LoopmlError
from loopml.data.catalog import Catalog
from loopml.data.drift import drift
from loopml.pipelines import records
from loopml.registry import promotion
from loopml.registry.card import render_card
from loopml.server import assets, sketch, tokens
from loopml.server.auth import COOKIE, require_access
from loopml.server.graph_layout import GraphNode, Layout, layout
from loopml.server.routes.common import version_number
from loopml.server.routes.datasets import _validation, profile_document, version_of
from loopml.server.routes.monitoring import EVENT_KINDS, NOT_YET, alerts, history_rows
from loopml.server.state import ServerState, monitoring_module, state
from loopml.server.wire import finite_list
from loopml.store.lineage import LineageGraph
from loopml.tracking.records import RunPage

router = APIRouter(include_in_schema=False)
guarded = APIRouter(include_in_schema=False, dependencies=[Depends(require_access)])
St = Annotated[ServerState, Depends(state)]
PAGE_SIZE = 100
CHART_POINTS = 1000
MAX_COLUMNS = 8
MAX_COMPARE = 10


@functools.cache
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("loopml.server") / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ts"] = clock.format_ts
    env.filters["num"] = _num
    env.filters["secs"] = _secs
    env.filters["pairs"] = lambda m: ", ".join(f"{k}={v}" for k, v in dict(m or {}).items())
    env.filters["short"] = lambda s: "" if s is None else str(s)[:12]
    env.globals["asset"] = assets.url
    env.globals["qs"] = lambda **kw: urlencode({k: v for k, v in kw.items() if v is not None})
    return env


def warm() -> None:
    """Compile every template and read every static file, so that the first visitor of a
    page does not wait for it (compiling them all takes a second or more)."""
    env = templates()
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)
    for name in ("app.css", "app.js", assets.PLOTLY):
        assets.load(name)


def _num(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.6g}"
    return str(v)


def _secs(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:.2f} s" if v < 120 else f"{v / 60:.1f} min"


def render(request: Request, template: str, /, **context: Any) -> HTMLResponse:
    html = (
        templates().get_template(template).render(request=request, path=request.url.path, **context)
    )
    return HTMLResponse(html)


# --- static and sign-in ------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/runs") -> HTMLResponse:
    return render(request, "login.html", next=_local(next), error=None)


@router.post("/login")
def login(
    request: Request,
    s: St,
    token: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "/runs",
) -> Response:
    try:
        tokens.authenticate(s.workspace, token)
    except tokens.UnauthorizedError as exc:
        page = render(request, "login.html", next=_local(next), error=str(exc))
        page.status_code = 401
        return page
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return response


def _local(target: str) -> str:
    # Only paths of this server: a sign-in link must not forward anywhere else.
    return target if target.startswith("/") and not target.startswith("//") else "/runs"


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/runs", status_code=307)


# --- runs --------------------------------------------------------------------------------


@guarded.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    s: St,
    experiment: Annotated[str | None, Query(max_length=250)] = None,
    filter: Annotated[str | None, Query(max_length=10_000)] = None,
    order_by: Annotated[str | None, Query(max_length=1000)] = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> HTMLResponse:
    error = None
    try:
        page = s.tracker.runs_page(
            experiment=experiment or None,
            filter=filter,
            order_by=order_by,
            offset=offset,
            limit=PAGE_SIZE,
        )
    except LoopmlError as exc:
        error = str(exc)
        page = RunPage([], 0, offset, PAGE_SIZE)
    metric_keys = sorted({k for r in page.runs for k in r.metrics})[:MAX_COLUMNS]
    param_keys = sorted({k for r in page.runs for k in r.params})[:MAX_COLUMNS]
    return render(
        request,
        "runs.html",
        page=page,
        error=error,
        experiments=s.tracker.experiments(),
        experiment=experiment or "",
        filter=filter or "",
        order_by=order_by or "",
        metric_keys=metric_keys,
        param_keys=param_keys,
        prev_offset=max(0, offset - PAGE_SIZE) if offset > 0 else None,
        next_offset=offset + PAGE_SIZE if offset + PAGE_SIZE < page.total else None,
    )


def _charts(s: ServerState, run_id: str, keys: list[str]) -> list[dict[str, Any]]:
    charts = []
    for key in keys:
        h = s.tracker.metric_history(run_id, key, max_points=CHART_POINTS)
        steps, values = h.steps.tolist(), finite_list(h.values)
        low = None if h.min is None else finite_list(h.min)
        high = None if h.max is None else finite_list(h.max)
        title = (
            key if h.total_points <= len(steps) else f"{key} ({h.total_points} points, bucketed)"
        )
        charts.append(
            {
                "key": key,
                "run": run_id,
                "title": title,
                "steps": steps,
                "values": values,
                "min": low,
                "max": high,
                "total": h.total_points,
            }
        )
    return charts


@guarded.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, s: St, run_id: str) -> HTMLResponse:
    run = s.tracker.get_run(run_id)
    lineage = s.workspace.lineage
    env = None
    if run.environment_digest is not None:
        env = s.tracker.environment(run.environment_digest)
    charts = _charts(s, run.id, sorted(run.metrics))
    return render(
        request,
        "run.html",
        run=run,
        charts=charts,
        sketches=[
            sketch.sketch(
                c["title"], [sketch.Series(c["key"], c["steps"], c["values"], c["min"], c["max"])]
            )
            for c in charts
        ],
        inputs=lineage.artifacts_of(run.id, "input"),
        outputs=lineage.artifacts_of(run.id, "output"),
        env=env,
    )


@guarded.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, s: St, run: Annotated[list[str] | None, Query(max_length=200)] = None
) -> HTMLResponse:
    ids = list(dict.fromkeys(run or []))[:MAX_COMPARE]
    found = [s.tracker.get_run(i) for i in ids]
    shared = sorted(set.intersection(*(set(r.metrics) for r in found))) if found else []
    charts: list[dict[str, Any]] = []
    sketches = []
    for key in shared:
        series = [c for r in found for c in _charts(s, r.id, [key])]
        for c, r in zip(series, found, strict=True):
            c["label"] = r.name
        charts.append({"key": key, "series": series})
        lines = [sketch.Series(c["label"], c["steps"], c["values"]) for c in series]
        sketches.append(sketch.sketch(key, lines))
    keys = {
        "params": sorted({k for r in found for k in r.params}),
        "metrics": sorted({k for r in found for k in r.metrics}),
        "tags": sorted({k for r in found for k in r.tags}),
    }
    return render(request, "compare.html", runs=found, keys=keys, charts=charts, sketches=sketches)


# --- datasets ----------------------------------------------------------------------------


@guarded.get("/datasets", response_class=HTMLResponse)
def datasets_page(
    request: Request, s: St, q: Annotated[str | None, Query(max_length=250)] = None
) -> HTMLResponse:
    found = Catalog(s.workspace).search(q or None)
    return render(request, "datasets.html", datasets=found, q=q or "")


@guarded.get("/datasets/{name}", response_class=HTMLResponse)
def dataset_page(request: Request, s: St, name: str) -> HTMLResponse:
    info = Catalog(s.workspace).info(name)
    versions = Catalog(s.workspace).versions(name)
    return render(request, "dataset.html", info=info, versions=versions)


@guarded.get("/datasets/{name}/diff", response_class=HTMLResponse)
def dataset_diff_page(
    request: Request,
    s: St,
    name: str,
    base: Annotated[str, Query(max_length=20)],
    other: Annotated[str, Query(max_length=20)],
) -> HTMLResponse:
    ref = version_of(s.workspace, name, base)
    cur = version_of(s.workspace, name, other)
    report = drift(ref, cur)
    ref_doc = {c["name"]: c for c in profile_document(ref)["columns"]}
    cur_doc = {c["name"]: c for c in profile_document(cur)["columns"]}
    charts = [
        {"column": c, "base": ref_doc[c], "other": cur_doc[c]}
        for c in (col.column for col in report.columns)
        if c in ref_doc and c in cur_doc
    ]
    return render(request, "diff.html", ref=ref, cur=cur, report=report.to_dict(), charts=charts)


@guarded.get("/datasets/{name}/{version}", response_class=HTMLResponse)
def dataset_version_page(request: Request, s: St, name: str, version: str) -> HTMLResponse:
    ds = version_of(s.workspace, name, version)
    validation = None
    validation_error = None
    try:
        validation = _validation(ds)
    except LoopmlError as exc:
        validation_error = str(exc)
    schema = None if ds.schema is None else ds.schema.to_dict()
    return render(
        request,
        "dataset_version.html",
        ds=ds,
        profile=profile_document(ds),
        schema=schema,
        validation=validation,
        validation_error=validation_error,
    )


# --- registry ----------------------------------------------------------------------------


@guarded.get("/models", response_class=HTMLResponse)
def models_page(request: Request, s: St) -> HTMLResponse:
    return render(request, "models.html", models=s.registry.models())


@guarded.get("/models/{name}", response_class=HTMLResponse)
def model_page(request: Request, s: St, name: str) -> HTMLResponse:
    model = s.registry.get_model(names.check_name(name, what="model name"))
    return render(
        request,
        "model.html",
        model=model,
        versions=s.registry.versions(name),
        history=list(reversed(s.registry.history(name))),
        policy=promotion.policy(s.workspace, name),
    )


@guarded.get("/models/{name}/{version}", response_class=HTMLResponse)
def model_version_page(request: Request, s: St, name: str, version: str) -> HTMLResponse:
    mv = s.registry.get_version(name, version_number(version))
    card = render_card(s.workspace, name, mv.version)
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    return render(request, "model_version.html", mv=mv, card_html=md.render(card))


# --- lineage and pipelines ---------------------------------------------------------------


def _node_href(s: ServerState, g: LineageGraph, node_id: str) -> str:
    if node_id in g.executions:
        e = g.executions[node_id]
        if e.kind == "run":
            return f"/runs/{node_id}"
    if node_id in g.artifacts:
        props = g.artifacts[node_id].properties
        if g.artifacts[node_id].kind == "dataset" and "dataset" in props:
            return f"/datasets/{props['dataset']}/{props.get('version', 'latest')}"
    return f"/lineage/{node_id}"


def lineage_layout(s: ServerState, g: LineageGraph) -> Layout:
    nodes = [
        GraphNode(
            a.id,
            a.name or a.digest[:16],
            a.kind,
            "artifact root" if a.id == g.root else "artifact",
            _node_href(s, g, a.id),
        )
        for a in g.artifacts.values()
    ] + [
        GraphNode(
            e.id,
            e.name or e.id[:12],
            f"{e.kind} · {e.status}",
            "execution root" if e.id == g.root else "execution",
            _node_href(s, g, e.id),
        )
        for e in g.executions.values()
    ]
    return layout(nodes, [(e.source, e.target, e.role) for e in g.edges])


@guarded.get("/lineage/{node_id}", response_class=HTMLResponse)
def lineage_page(
    request: Request,
    s: St,
    node_id: str,
    direction: Annotated[str, Query(pattern="^(upstream|downstream|both)$")] = "both",
) -> HTMLResponse:
    lineage = s.workspace.lineage
    if direction == "both":
        up = lineage.graph(node_id, "upstream")
        down = lineage.graph(node_id, "downstream")
        g = LineageGraph(
            node_id,
            {**up.artifacts, **down.artifacts},
            {**up.executions, **down.executions},
            tuple(dict.fromkeys(up.edges + down.edges)),
        )
    else:
        g = lineage.graph(node_id, "upstream" if direction == "upstream" else "downstream")
    return render(
        request, "lineage.html", graph=lineage_layout(s, g), root=node_id, direction=direction
    )


@guarded.get("/pipelines", response_class=HTMLResponse)
def pipelines_page(request: Request, s: St) -> HTMLResponse:
    return render(request, "pipelines.html", runs=records.list_runs(s.workspace, None, 100))


@guarded.get("/pipelines/{run_id}", response_class=HTMLResponse)
def pipeline_page(request: Request, s: St, run_id: str) -> HTMLResponse:
    p = records.get(s.workspace, run_id)
    steps = sorted(p.steps.values(), key=lambda st: st.position)
    nodes = [
        GraphNode(
            st.node,
            st.node,
            f"{st.status}" + (f" · {_secs(st.duration)}" if st.duration is not None else ""),
            f"step {st.status}",
            f"/runs/{st.run_id}" if st.run_id else None,
        )
        for st in steps
    ]
    edges = [(dep, st.node, arg) for st in steps for arg, dep in st.deps.items()]
    return render(request, "pipeline.html", p=p, steps=steps, graph=layout(nodes, edges))


# --- monitoring --------------------------------------------------------------------------


@guarded.get("/monitoring", response_class=HTMLResponse)
def monitoring_page(
    request: Request, s: St, name: Annotated[str | None, Query(max_length=250)] = None
) -> HTMLResponse:
    available = monitoring_module() is not None
    events = s.workspace.lineage.latest_executions(EVENT_KINDS)
    rows: list[dict[str, Any]] = []
    error = None
    if available and name:
        try:
            rows = history_rows(s, names.check_name(name, what="model name"), "1d")
        except LoopmlError as exc:
            error = str(exc)
    return render(
        request,
        "monitoring.html",
        available=available,
        not_yet=NOT_YET,
        events=events,
        models=[m.name for m in s.registry.models()],
        name=name,
        rows=rows,
        error=error,
        alerts=alerts(s),
    )


router.include_router(guarded)
