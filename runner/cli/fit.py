"""Output that stays readable at any terminal width: a table where it fits, blocks where it does not.

Rich folds a table that is too wide into slivers (`mean_im / ages_pe / r_s` at 80 columns, the
width of many terminals and of CI logs). `Fit` measures the wide form at print time and uses
it only when it fits unwrapped; otherwise the narrow form, built for the width. `grid_or_lines`
is one narrow form: aligned columns when they fit, else one wrapped line per row (words are
never split; only a single word longer than the width would be).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

_UNBOUNDED = 100_000


class Fit:
    """Renders `wide()` when its natural width fits the console, else `narrow(width)`."""

    def __init__(self, wide: Callable[[], RenderableType], narrow: Callable[[int], RenderableType]) -> None:
        self.wide, self.narrow = wide, narrow

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = self.wide()
        yield wide if fits(console, wide, options.max_width) else self.narrow(options.max_width)


def natural_width(console: Console, renderable: RenderableType) -> int:
    """The width a renderable takes unwrapped (Measurement clamps to the width it is given: give plenty)."""
    return Measurement.get(console, console.options.update_width(_UNBOUNDED), renderable).maximum


def fits(console: Console, renderable: RenderableType, width: int) -> bool:
    return natural_width(console, renderable) <= width


def grid_or_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, *,
                  right: Sequence[str] = (), indent: int = 0) -> RenderableType:
    """Aligned, never-wrapping columns when they fit `width`; else each row as `first: header value, ...`."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1))
    for h in headers:
        table.add_column(h, no_wrap=True, justify="right" if h in right else "left")
    for row in rows:
        table.add_row(*row)
    if fits(Console(width=width), table, width - indent):
        return Padding(table, (0, 0, 0, indent))
    lines = []
    for row in rows:
        rest = ", ".join(f"{h} {v}" for h, v in zip(headers[1:], row[1:], strict=True) if v != "")
        lines.append(Padding(Text(f"{row[0]}: {rest}"), (0, 0, 0, indent)))
    return Group(*lines)
