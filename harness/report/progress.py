"""A progress bar on stderr: only on a terminal, and only once a run has lasted a
couple of seconds, so short runs and redirected output stay clean."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, stream=None, delay: float = 2.0):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start, self.delay = time.perf_counter(), delay
        self.shown = False

    def advance(self, note: str = "") -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        if not self.enabled or elapsed < self.delay:
            return
        width = 24
        filled = round(width * self.done / self.total)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.label}"
            f"  {elapsed:5.0f} s  {note:<12}"
        )
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def stderr_progress(text: str) -> None:
    """A line of progress on stderr, at once."""
    print(text, file=sys.stderr, flush=True)
