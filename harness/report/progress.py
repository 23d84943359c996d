"""Live progress on a terminal, drawn by rich on stderr: a line per row (or per task
group) that runs while it trains and shows its figures when done, and a bar for a
cluster's tasks. Nothing of it goes to a stream that is not a terminal, so piped output
and --json stay clean; notices (a row skipped, a row that could not run) go to stderr
either way."""

from __future__ import annotations

import sys
from typing import Any


def _console(stream=None):
    from rich.console import Console

    return Console(file=stream if stream is not None else sys.stderr, highlight=False)


class Board:
    """Lines that each run (a pulse while their total is unknown) until finished with a
    status; ``verdict`` ends the display. A context manager: the display lives inside
    the block. On a stream that is not a terminal it shows nothing but the notices."""

    def __init__(self, stream=None) -> None:
        self.console = _console(stream)
        self.enabled = self.console.is_terminal
        self.lines: dict = {}
        self.display: Any = None
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.display = Progress(
                TextColumn("{task.description:<22}"),
                BarColumn(bar_width=24),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
            )

    def __enter__(self):
        if self.display is not None:
            self.display.start()
        return self

    def __exit__(self, *exc):
        if self.display is not None:
            self.display.stop()

    def add(self, key, label: str, total: int | None = None, status: str = "running") -> None:
        if self.display is not None and key not in self.lines:
            self.lines[key] = self.display.add_task(label, total=total, status=status)

    def advance(self, key, status: str | None = None) -> None:
        if key in self.lines:
            self.display.update(self.lines[key], advance=1, **({"status": status} if status else {}))

    def finish(self, key, status: str) -> None:
        if key in self.lines:
            task = self.lines[key]
            total = self.display.tasks[task].total or 1
            self.display.update(task, total=total, completed=total, status=status)
            self.display.stop_task(task)

    def notice(self, text: str) -> None:
        """A line every user sees: above the live display, or on stderr as it is."""
        if self.enabled:
            self.console.print(text, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def verdict(self, text: str) -> None:
        if self.display is not None:
            self.display.stop()
            self.console.print(text, markup=False)


class Progress:
    """A cluster's tasks (sweep, audit, power): one bar that fills as tasks finish, with
    the count and the time; only on a terminal."""

    def __init__(self, total: int, label: str, stream=None):
        self.board = Board(stream)
        self.board.__enter__()
        self.board.add("tasks", label, total=total, status=f"0/{total}")
        self.total, self.done = total, 0

    def advance(self, note: str = "") -> None:
        self.done += 1
        self.board.advance("tasks", f"{self.done}/{self.total} {note}".rstrip())

    def close(self) -> None:
        self.board.__exit__(None, None, None)
