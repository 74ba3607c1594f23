"""Short summaries of records: one line for ``repr``, a small table in a notebook.

A record class inherits :class:`Summarized`, says what to show in ``_summary()``, and is
declared with ``@dataclass(repr=False)`` (a dataclass would otherwise write its own
``__repr__`` listing every field, profiles and signatures included).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_ROWS = 20


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Summary:
    """A title, a few labelled fields and, optionally, a small table."""

    title: str
    fields: Sequence[tuple[str, object]] = ()
    columns: Sequence[str] = ()
    rows: Sequence[Sequence[object]] = field(default_factory=list)

    def text(self) -> str:
        parts = [f"{k}={_text(v)}" for k, v in self.fields if v not in (None, "")]
        if self.rows:
            parts.append(f"{len(self.rows)} rows")
        return f"<{self.title}" + (": " + ", ".join(parts) if parts else "") + ">"

    def html(self) -> str:
        out = [f"<div><strong>{html.escape(self.title)}</strong>"]
        if self.fields:
            out.append("<table>")
            out += [
                f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                f"<td style='text-align:left'>{html.escape(_text(v))}</td></tr>"
                for k, v in self.fields
            ]
            out.append("</table>")
        if self.rows:
            out.append("<table><thead><tr>")
            out += [f"<th>{html.escape(c)}</th>" for c in self.columns]
            out.append("</tr></thead><tbody>")
            for row in self.rows[:MAX_ROWS]:
                cells = "".join(f"<td>{html.escape(_text(v))}</td>" for v in row)
                out.append(f"<tr>{cells}</tr>")
            out.append("</tbody></table>")
            if len(self.rows) > MAX_ROWS:
                out.append(f"<p>… {len(self.rows) - MAX_ROWS} more</p>")
        out.append("</div>")
        return "".join(out)


class Summarized:
    """``__repr__`` and ``_repr_html_`` from the ``Summary`` a subclass returns."""

    def _summary(self) -> Summary:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self._summary().text()

    def _repr_html_(self) -> str:
        return self._summary().html()
