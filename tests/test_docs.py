"""The docs site as readers meet it: each page in one of four kinds and opening with what
it answers, short prose paragraphs, and the built site opened in headless Chromium from a
server on loopback: every page without a console error, every request to the site itself,
every figure drawn and the equations rendered as MathML."""

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.browser import Browser, find_chromium
from tests.docs_prose import pages, paragraphs, words

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("Tutorials", "How-to guides", "Explanations", "Reference")
MOST_WORDS = 120  # a prose paragraph's most
OPENER = '!!! abstract "What this page answers"'


def nav() -> list:
    import yaml

    class Loader(yaml.SafeLoader):  # mkdocs.yml's !!python tags are none of ours; plain YAML
        pass

    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)["nav"]


def test_every_page_is_in_one_of_four_kinds():
    sections = {next(iter(entry)): next(iter(entry.values())) for entry in nav()}
    assert list(sections) == ["Home", *KINDS]
    listed = ["index.md"] + [next(iter(page.values())) for kind in KINDS for page in sections[kind]]
    assert sorted(listed) == sorted(pages()) and len(set(listed)) == len(listed)


@pytest.mark.parametrize("name", sorted(pages()))
def test_every_page_opens_with_what_it_answers(name):
    blocks = pages()[name].split("\n\n")
    assert blocks[0].startswith("# ") and blocks[1].startswith(OPENER), blocks[1][:80]
    assert 8 <= words(blocks[1].removeprefix(OPENER)) <= 60


def test_prose_paragraphs_stay_short():
    longest = max((words(p), name, p[:60]) for name, text in pages().items() for p in paragraphs(text))
    assert longest[0] <= MOST_WORDS, longest


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs"), pytest.importorskip("material"), pytest.importorskip("latex2mathml")
    folder = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    unmade = [p.name for p in folder.rglob("*.html") if "<!-- generated:" in p.read_text()]
    assert unmade == [], unmade  # every marker a page asks for was made
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(10)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_the_site_opens_in_a_browser_with_nothing_from_outside(site):
    folder, base = site
    here = urlparse(base).netloc
    opened = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("index.html") if "assets" not in p.parts)
    assert len(opened) >= len(pages())
    figures, maths = 0, 0
    with Browser(find_chromium()) as browser:
        for page in opened:
            browser.open(base + page.removesuffix("index.html"))
            seen = browser.evaluate(
                "({images: [...document.images].map(i => [i.src, i.naturalWidth]),"
                " maths: document.querySelectorAll('math').length,"
                " title: document.querySelector('h1') && document.querySelector('h1').textContent})"
            )
            assert browser.console_errors() == [], page
            asked = [urlparse(u) for u in browser.requests()]
            outside = [u.geturl() for u in asked if u.scheme not in ("data", "blob") and u.netloc != here]
            assert outside == [], (page, outside[:3])
            assert all(width > 0 for _, width in seen["images"]), (page, seen["images"])
            figures += sum(1 for src, _ in seen["images"] if "/figures/" in src)
            maths += seen["maths"]
    assert browser.process.poll() is not None
    assert figures >= 3 and maths >= 5  # the explanations' figures from the build's run; rendered equations
