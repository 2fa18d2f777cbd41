"""Every relative Markdown link in README.md and docs/*.md points to a file or folder that exists."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r'!?\[[^\]]*\]\(\s*(?:<([^>]+)>|([^)\s]+))(?:\s+"[^"]*")?\s*\)')  # [text](target "title")
FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.S | re.M)


def relative_links(text: str) -> list[str]:
    """Link targets outside code blocks and inline code, minus URLs, mail links and pure #anchors;
    an anchor (``#L10-L20``, ``#section``) is cut off the target."""
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))
    targets = [m.group(1) or m.group(2) for m in LINK.finditer(text)]
    return [t.split("#")[0] for t in targets
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t, flags=re.I) and not t.startswith("#")]


def test_link_parser():
    text = ("[a](x.md) ![b](figures/p.png) [c](../m.py#L3-L9) [d](https://e.org/f.md) [g](#top)\n"
            "`[h](inline.md)` [i](<sp ace.md>) [j](k.md \"title\")\n```\n[l](in_fence.md)\n```\n")
    assert relative_links(text) == ["x.md", "figures/p.png", "../m.py", "sp ace.md", "k.md"]


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = [t for t in relative_links(page.read_text()) if not (page.parent / t).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"
