"""Tables that stay readable at 80 columns, the width of piped output.

Identifiers, dates, numbers and headers never wrap (a run id split over two lines cannot be
copied; ``experi|ment`` cannot be read); free text is what gives way, cut with an ellipsis.
"""

from __future__ import annotations

from typing import Literal

from rich import box
from rich.table import Table

Justify = Literal["left", "center", "right"]


def table(title: str | None = None) -> Table:
    # A rule under the header instead of a full grid, and no outer edge: room for one
    # more column at 80.
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))


def fixed(t: Table, header: str, *, justify: Justify = "left") -> None:
    """A column whose values are read whole: ids, dates, numbers, statuses."""
    t.add_column(header, justify=justify, no_wrap=True, min_width=len(header))


def text(t: Table, header: str, *, ratio: int = 1, wrap: bool = False) -> None:
    """A column of free text: it gives way when the table is too wide for the terminal.

    It wraps at spaces; a word too long for it is cut with an ellipsis (or, with ``wrap``,
    folded onto the next line). Only these columns shrink, so ids and dates stay whole.
    """
    t.add_column(
        header,
        ratio=ratio,
        no_wrap=False,
        overflow="fold" if wrap else "ellipsis",
        min_width=len(header),
    )


# Between two columns: a padding space, the (blank) rule, a padding space.
GAP = 3


def width_left(total: int, used: list[int]) -> int:
    """Characters left for more columns once ``used`` widths (plus gaps) are placed."""
    return total - sum(used) - GAP * max(len(used) - 1, 0)
