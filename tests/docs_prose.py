"""The docs' prose, measured as tests/test_docs.py holds it: paragraphs outside code
blocks, tables, headings and HTML comments, a list item counted as a paragraph of its own
(its continuation paragraphs too); words are whitespace-separated tokens."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
ITEM = re.compile(r"^\s*(?:[-*]|\d+\.)\s")


def paragraphs(text: str) -> list:
    """The prose paragraphs of a page's Markdown, each as its text."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"^\$\$.*?^\$\$", "", text, flags=re.S | re.M)
    found = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines or lines[0].lstrip().startswith(("#", "|", "<!--", "<", "!")):
            continue
        item: list = []
        for line in lines:
            if ITEM.match(line) and item:
                found.append(" ".join(item))
                item = []
            item.append(line.strip())
        found.append(" ".join(item))
    return found


def words(paragraph: str) -> int:
    return len(paragraph.split())


def pages() -> dict:
    return {p.name: p.read_text() for p in sorted(DOCS.glob("*.md"))}
