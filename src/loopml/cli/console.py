"""The Rich consoles every command prints through, and the helpers that keep user text literal.

Rich reads ``[...]`` in any string as markup, so a description, tag or file name such as
``[/x]`` would crash the command (or restyle it). Every piece of user text goes through
:func:`esc` (inside f-strings) or :func:`lit` (as a table cell); loopml's own styling stays
markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from loopml.core.progress import silent

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def esc(value: object) -> str:
    """``value`` as text that Rich prints literally inside a markup string."""
    return escape("" if value is None else str(value))


def lit(value: object) -> Text:
    """``value`` as a Rich ``Text``: printed exactly, never read as markup."""
    return Text("" if value is None else str(value))


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 label``, ``3 labels``, ``1 anomaly``, ``2 anomalies``."""
    word = singular if count == 1 else (plural_form or f"{singular}s")
    return f"{count:,} {word}"


def print_error(message: str) -> None:
    """One error line on stderr; the message is never read as markup."""
    text = Text("error: ", style="bold red")
    text.append(message)
    err.print(text, soft_wrap=True)


@contextmanager
def bars(description: str) -> Iterator[Callable[[str, int, int], None]]:
    """Progress bars on stderr, one a stage, fed by the ``(stage, done, total)`` calls of
    ``loopml.core.progress``; the first line names the whole job with the time elapsed.
    Rich draws them only on a terminal, so piped output and logs stay clean, and removes
    them when the work ends."""
    if not err.is_terminal:
        # Rich would still end its live display with a blank line on a pipe.
        yield silent
        return
    with Progress(
        SpinnerColumn(),
        # A long path in the title must not squeeze the counts out of the line.
        TextColumn(
            "{task.description}",
            table_column=Column(max_width=48, no_wrap=True, overflow="ellipsis"),
        ),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        progress.add_task(description, total=None)
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(f"  {escape(stage)}", total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield report
