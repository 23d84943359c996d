"""Every process the tool starts ends with it: on success, on an error, on Ctrl-C and on
SIGTERM.

The command line runs under ``guarded``. SIGINT (Ctrl-C, to the process group or to the
main process alone) and SIGTERM end every descendant at once (worker pools, dask's
nannies and workers, Octave and Scilab, the resource tracker), then unwind the main
process as an exception, so that an output half-written is removed
(``harness.files.outputs.write_atomic``); the command then says one line and exits 130
or 143. Unwinding must not wait on the processes just ended, but a library may (dask's
client closing on workers that are gone): a watchdog ends the process after
``GRACE_SECONDS`` whatever it is doing, having removed what is half-written.

Worker processes ignore SIGINT (``ignore_interrupts``): Ctrl-C to the group reaches
them too, and their tracebacks must not reach the terminal; the main process ends them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
GRACE_SECONDS = 1.5
# output files being written (temporary names): removed when the process is ended
PENDING_FILES: set = set()
_SAID = threading.Event()  # the one line is said once, by the unwinding or the watchdog


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as KeyboardInterrupt is for SIGINT."""


def end_descendants(timeout: float = 1.0) -> None:
    """Kill every process this one started, and theirs, and wait for them briefly."""
    import psutil

    try:
        # the resource tracker ends by itself when this process does; killed earlier it is
        # started again, with a warning, by the next pool that cleans up
        children = [c for c in psutil.Process().children(recursive=True) if not _is_resource_tracker(c)]
    except psutil.Error:
        return
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    # Waited for without reaping (psutil.wait_procs would): the pools reap their own
    # workers, and a worker reaped under them looks alive to them forever.
    deadline = time.monotonic() + timeout
    while children and time.monotonic() < deadline:
        children = [c for c in children if _running(c)]
        time.sleep(0.01)


def _running(process) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _is_resource_tracker(process) -> bool:
    try:
        return "multiprocessing.resource_tracker" in " ".join(process.cmdline())
    except Exception:  # gone, or not ours to read: nothing to spare
        return False


def remove_pending_files() -> None:
    for path in list(PENDING_FILES):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _end_after_grace(status: int) -> None:
    """The watchdog: if unwinding takes longer than GRACE_SECONDS, end here."""

    def end() -> None:
        remove_pending_files()
        end_descendants(timeout=0.2)
        _say(status)
        os._exit(status)

    timer = threading.Timer(GRACE_SECONDS, end)
    timer.daemon = True
    timer.start()


def _say(status: int) -> None:
    if _SAID.is_set():
        return
    _SAID.set()
    if sys.stderr.isatty():  # after a progress bar's unfinished line
        sys.stderr.write("\n")
    print("interrupted" if status == EXIT_INTERRUPTED else "terminated", file=sys.stderr, flush=True)


def _on_signal(signum, frame) -> None:
    for each in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not interrupt the cleanup
        signal.signal(each, signal.SIG_IGN)
    status = 128 + signum
    end_descendants()
    _end_after_grace(status)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


# Processes ended mid-run leave semaphores registered with multiprocessing's resource
# tracker, which removes them when this process exits and says so on stderr. The removal
# is right; the warning is noise for the user, who asked for the stop.
_TRACKER_QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"


def guarded(main: Callable[[], int]) -> int:
    """``main()``'s exit status, with SIGINT and SIGTERM ending the run and everything it
    started (module doc): one line on stderr, and the process exits 130 or 143."""
    warnings = os.environ.get("PYTHONWARNINGS")  # read by the processes this one starts
    os.environ["PYTHONWARNINGS"] = f"{warnings},{_TRACKER_QUIET}" if warnings else _TRACKER_QUIET
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        status = main()
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    except Terminated:
        status = EXIT_TERMINATED
    else:
        return status
    remove_pending_files()
    end_descendants()
    _say(status)
    # The run is over and everything it started is gone. The interpreter's own teardown
    # (the frameworks' thread pools, dask's loop) can take a second or more after an
    # interrupted run, and there is nothing left for it to save.
    sys.stdout.flush()
    os._exit(status)


def ignore_interrupts() -> None:
    """A worker process's initializer: Ctrl-C is for the main process to act on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
