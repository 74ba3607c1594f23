"""A self-contained HTML drift report: a summary table and one Plotly chart per column.

Plotly's JavaScript is inlined from the installed package, so the file opens offline and
never fetches anything from a CDN. Charts are drawn from the two profiles only.
"""

from __future__ import annotations

import html
import os
from typing import Any

import jinja2
import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from loopml.data.drift import DriftReport
from loopml.data.histogram import common_grid
from loopml.data.profile import ColumnProfile, Profile

_CHART_BINS = 60
_CHART_CATEGORIES = 30

_TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<script>{{ plotly_js | safe }}</script>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 2rem; }
th, td { padding: .3rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.drift { color: #b00020; font-weight: 600; }
.ok { color: #1b5e20; }
.chart { margin-bottom: 1.5rem; }
</style></head><body>
<h1>{{ title }}</h1>
<p>Reference: {{ reference_label }} ({{ report.reference_rows }} rows) &middot;
Current: {{ current_label }} ({{ report.current_rows }} rows) &middot;
{{ report.drifted_columns | length }} of {{ report.columns | length }} columns drifted</p>
<table>
<tr><th>column</th><th>kind</th><th>method</th><th>statistic</th><th>p-value</th>
<th>threshold</th><th>verdict</th></tr>
{% for c in report.columns %}
<tr><td>{{ c.column }}</td><td>{{ c.kind }}</td><td>{{ c.method }}</td>
<td class="num">{{ "%.4g" | format(c.statistic) }}</td>
<td class="num">{{ "" if c.p_value is none else "%.3g" | format(c.p_value) }}</td>
<td class="num">{{ c.threshold }}</td>
<td class="{{ 'drift' if c.drifted else 'ok' }}">{{ "drift" if c.drifted else "ok" }}</td></tr>
{% endfor %}
{% for name, reason in report.skipped.items() %}
<tr><td>{{ name }}</td><td colspan="6">not compared: {{ reason }}</td></tr>
{% endfor %}
</table>
{% for chart in charts %}<div class="chart">{{ chart | safe }}</div>{% endfor %}
</body></html>
"""
)


def render_html(
    report: DriftReport,
    reference: Profile,
    current: Profile,
    *,
    title: str = "Drift report",
    reference_label: str = "reference",
    current_label: str = "current",
) -> str:
    charts = []
    for c in report.columns:
        fig = _figure(reference[c.column], current[c.column], reference_label, current_label)
        verdict = "drift" if c.drifted else "no drift"
        fig.update_layout(
            title=f"{html.escape(c.column)} — {c.method} {c.statistic:.4g} ({verdict})",
            height=320,
            margin={"l": 40, "r": 20, "t": 50, "b": 40},
            barmode="overlay" if c.kind == "numeric" else "group",
            yaxis_title="share of rows",
        )
        charts.append(fig.to_html(full_html=False, include_plotlyjs=False))
    return _TEMPLATE.render(
        title=title,
        report=report,
        charts=charts,
        plotly_js=get_plotlyjs(),
        reference_label=reference_label,
        current_label=current_label,
    )


def write_html(
    report: DriftReport, reference: Profile, current: Profile, path: str, **kw: Any
) -> str:
    text = render_html(report, reference, current, **kw)
    tmp = f"{path}.part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def _figure(ref: ColumnProfile, cur: ColumnProfile, ref_label: str, cur_label: str) -> go.Figure:
    fig = go.Figure()
    if ref.kind == "numeric":
        assert ref.numeric and cur.numeric and ref.numeric.histogram and cur.numeric.histogram
        hists = [ref.numeric.histogram, cur.numeric.histogram]
        k, offset, n = common_grid(hists, max_bins=_CHART_BINS)
        width = 2.0**k
        centers = (np.arange(n) + offset + 0.5) * width
        for h, label in zip(hists, (ref_label, cur_label), strict=True):
            counts = h.dense(k, offset, n)
            fig.add_bar(x=centers, y=counts / max(counts.sum(), 1), name=label, opacity=0.6)
        fig.update_xaxes(title=ref.name)
    else:
        assert ref.frequencies and cur.frequencies
        keys = list(dict.fromkeys([*ref.frequencies.counts, *cur.frequencies.counts]))
        keys = keys[:_CHART_CATEGORIES]
        for f, label in ((ref.frequencies, ref_label), (cur.frequencies, cur_label)):
            total = max(f.total, 1)
            fig.add_bar(x=keys, y=[f.counts.get(k, 0) / total for k in keys], name=label)
    return fig
