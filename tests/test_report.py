"""``--report FILE.html`` as a user opens it: written by the real command line, then shown
in headless Chromium (tests/browser.py). The page must show its verdict, every section
and every figure, log no console error and ask for nothing outside the file."""

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.browser import Browser, find_chromium
from tests.test_cli import run_cli

SECTIONS = ("rows", "pairs", "lockstep", "gaps", "figures", "environment")


@pytest.fixture(scope="module")
def browser():
    with Browser(find_chromium()) as opened:
        yield opened
    assert opened.process.poll() is not None, "Chromium outlived its test"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The default run's report on numpy and torch, agreeing and with a planted fault."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("reports")
    made = {}
    for name, extra in (("agree", []), ("planted", ["--inject", "torch:eps-inside-sqrt"])):
        args = ["--backends", "numpy,torch", "--epochs", "300", "--replay-dir", str(out / "replays")]
        result = run_cli(*args, *extra, "--report", str(out / f"{name}.html"), "--json", str(out / f"{name}.json"))
        assert result.returncode == (0 if name == "agree" else 1), result.stderr
        made[name] = (out / f"{name}.html", json.loads((out / f"{name}.json").read_text()))
    return made


def shown(browser, path: Path) -> dict:
    """The page opened: its verdict, sections, figures' sizes, console errors and requests."""
    browser.open(path.as_uri())
    return browser.evaluate(
        """(() => ({
        verdict: document.getElementById('verdict').textContent,
        passed: document.getElementById('verdict').dataset.passed,
        sections: [...document.querySelectorAll('section')].map(s => s.id),
        figures: [...document.images].map(i => [i.alt, i.naturalWidth, i.getBoundingClientRect().width]),
        failing: [...document.querySelectorAll('section.failing')].map(s => s.innerText),
        scripts: document.scripts.length,
    }))()"""
    )


def outside_requests(browser) -> list:
    return [u[:80] for u in browser.requests() if urlparse(u).scheme not in ("file", "data")]


def test_the_report_shows_the_verdict_every_section_and_every_figure(browser, reports):
    path, data = reports["agree"]
    page = shown(browser, path)
    assert page["passed"] == "true" and data["passed"] is True
    assert page["verdict"].startswith("all 1 pairs agree")
    assert set(SECTIONS) <= set(page["sections"])
    # the heatmap, one drift figure, two figures per row and the overlay
    assert len(page["figures"]) == 1 + 1 + 2 * 2 + 1
    assert all(natural > 0 and width > 0 for _, natural, width in page["figures"]), page["figures"]
    assert page["scripts"] == 0
    assert browser.console_errors() == []
    assert outside_requests(browser) == []
    screenshot(browser, "report_top.png")


def screenshot(browser, name: str, selector: str | None = None) -> Path:
    """A PNG of the page (or of ``selector``'s element) in the session's screenshot folder,
    listed at the end of the test output (tests/conftest.py)."""
    from tests.conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / name
    browser.screenshot(shot, selector)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return shot


def test_a_planted_fault_shows_where_the_pair_parts(browser, reports):
    path, data = reports["planted"]
    page = shown(browser, path)
    assert page["passed"] == "false"
    assert page["verdict"].startswith("1 of 1 pairs disagree")
    div = data["agreement"][0]["first_divergence"]
    [section] = page["failing"]
    assert f"phase {div['phase']}" in section and f"epoch {div['epoch']}" in section
    assert "python compare.py replay " in section
    assert browser.console_errors() == [] and outside_requests(browser) == []
    shot = screenshot(browser, "report_failing_pair.png", "section.failing")
    assert shot.stat().st_size > 5000


def test_a_subcommand_report_shows_its_verdict_report_and_figures(browser, tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "lineage.html"
    args = ("lineage", "--epochs", "200", "--backends", "numpy,torch")
    result = run_cli(*args, "--report", str(path), "--json", str(tmp_path / "l.json"))
    assert result.returncode == 0, result.stderr
    page = shown(browser, path)
    data = json.loads((tmp_path / "l.json").read_text())
    assert page["passed"] == ("true" if data["passed"] else "false")
    assert {"report", "figures"} <= set(page["sections"])
    assert len(page["figures"]) >= 2 and all(n > 0 and w > 0 for _, n, w in page["figures"])
    assert browser.console_errors() == [] and outside_requests(browser) == []


def test_a_report_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    result = run_cli("--epochs", "100000000", "--report", str(tmp_path / "missing" / "r.html"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "folder" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def run_on_a_terminal(*args) -> tuple:
    """compare.py with stderr on a pseudo-terminal (120 columns) and stdout piped:
    (what the terminal showed, stdout, exit status)."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios

    from tests.test_cli import ROOT

    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")} | {"TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "compare.py"), *args], stdout=subprocess.PIPE, stderr=terminal, env=env
    )
    os.close(terminal)
    shown = b""
    while True:
        if select.select([master], [], [], 1)[0]:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # the terminal's other end closed: the run ended
                chunk = b""
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    stdout = process.stdout.read().decode()
    process.wait(60)
    os.close(master)
    return shown.decode(errors="replace"), stdout, process.returncode


def test_progress_shows_each_row_on_a_terminal_and_nothing_when_piped():
    pytest.importorskip("torch")
    args = ("--backends", "numpy,torch", "--epochs", "1000")
    shown, stdout, code = run_on_a_terminal(*args)
    assert code == 0
    for row in ("numpy", "torch"):
        assert re.search(rf"{row}\s.*trained in [0-9.]+ s, [0-9.]+ µs/epoch", shown), shown[-2000:]
    assert re.search(r"torch lockstep\s.*lockstep done in [0-9.]+ s", shown)
    assert "all 1 pairs agree" in shown.split("lockstep done")[-1]  # the verdict comes last
    assert "trained in" not in stdout and "\x1b[" not in stdout  # stdout is the report alone
    piped = run_cli(*args)
    assert piped.returncode == 0 and piped.stderr == "" and "trained in" not in piped.stdout


def test_the_json_keys_are_the_documented_ones(reports):
    from harness.commands.run_report import JSON_KEYS

    for _, data in reports.values():
        assert list(data) == list(JSON_KEYS)
