"""The Rich consoles every command prints through, and the helpers that keep user text literal.

Rich reads ``[...]`` in any string as markup, so a description, tag or file name such as
``[/x]`` would crash the command (or restyle it). Every piece of user text goes through
:func:`esc` (inside f-strings) or :func:`lit` (as a table cell); loopml's own styling stays
markup.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

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
def working(description: str) -> Iterator[None]:
    """A spinner with the elapsed time on stderr while long work runs.

    Rich draws it only on a terminal, so piped output and logs stay clean.
    """
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        progress.add_task(description, total=None)
        yield
