"""``loopml monitor NAME --html``: a self-contained report of a model's windows over time.

Charts (Plotly, its JavaScript inlined from the installed package, no CDN): drift per
input column, realised and estimated performance, volume, latency. Drawn from the stored
window results (the history frame), never from raw logs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jinja2
import plotly.graph_objects as go
import polars as pl

_TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 2rem; }
th, td { padding: .3rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.chart { margin-bottom: 1.5rem; }
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ windows }} window(s) from {{ first }} to {{ last }}; {{ rows }} predictions,
{{ labelled }} labelled.</p>
<table><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in table %}<tr>{% for v in r %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% for chart in charts %}<div class="chart">{{ chart | safe }}</div>{% endfor %}
</body></html>
"""
)
_TABLE = (
    "start",
    "versions",
    "rows",
    "labelled_rows",
    "drift_score",
    "perf_roc_auc",
    "est_roc_auc",
)


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


def _lines(
    h: pl.DataFrame, columns: Sequence[str], title: str, names: Sequence[str] | None = None
) -> str:
    fig = go.Figure()
    for col, name in zip(columns, names or columns, strict=True):
        fig.add_trace(go.Scatter(x=h["start"].to_list(), y=h[col].to_list(), name=name))
    fig.update_layout(title=title, height=340, margin={"l": 40, "r": 20, "t": 50, "b": 40})
    return fig.to_html(full_html=False, include_plotlyjs=False)


def render_html(h: pl.DataFrame, title: str) -> str:
    from plotly.offline import get_plotlyjs

    charts = [f"<script>{get_plotlyjs()}</script>"] if h.height else []
    if h.height:
        drift_cols = [c for c in h.columns if c.startswith("drift_") and c != "drift_score"]
        if drift_cols:
            charts.append(
                _lines(
                    h,
                    drift_cols,
                    "Drift per input column (statistic vs the training data)",
                    [c.removeprefix("drift_") for c in drift_cols],
                )
            )
        charts.append(_lines(h, ["drift_score"], "Drift score (share of drifted columns)"))
        perf = sorted(c for c in h.columns if c.startswith(("perf_", "est_")))
        if perf:
            charts.append(_lines(h, perf, "Realised (perf_) and estimated (est_) performance"))
        bars = go.Figure(go.Bar(x=h["start"].to_list(), y=h["rows"].to_list(), name="rows"))
        bars.add_trace(
            go.Bar(x=h["start"].to_list(), y=h["labelled_rows"].to_list(), name="labelled")
        )
        bars.update_layout(title="Volume", height=300, margin={"l": 40, "r": 20, "t": 50, "b": 40})
        charts.append(bars.to_html(full_html=False, include_plotlyjs=False))
        lat = [c for c in ("latency_p50", "latency_p95", "latency_p99") if c in h.columns]
        if lat:
            charts.append(_lines(h, lat, "Latency (ms)"))
    cols = [c for c in _TABLE if c in h.columns]
    table = [[_fmt(r[c]) for c in cols] for r in h.iter_rows(named=True)]
    return _TEMPLATE.render(
        title=title,
        windows=h.height,
        first=_fmt(h["start"].min()) if h.height else "",
        last=_fmt(h["end"].max()) if h.height else "",
        rows=int(h["rows"].sum()) if h.height else 0,
        labelled=int(h["labelled_rows"].sum()) if h.height else 0,
        header=cols,
        table=table,
        charts=charts,
    )


def write_html(h: pl.DataFrame, path: str, title: str) -> str:
    text = render_html(h, title)
    tmp = f"{path}.part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
