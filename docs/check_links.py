"""Fails on a broken link inside the built site: every relative href/src must name a
file of the site, and every #fragment an id (or name) on that page. Links that leave
the site are listed, not fetched (no network here).
"""

from __future__ import annotations

import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)
            if key in ("href", "src") and value:
                self.links.append(value)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def main(site: Path) -> int:
    pages = {path: parse(path) for path in sorted(site.rglob("*.html"))}
    broken, external = [], Counter()
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme in ("http", "https", "mailto"):
                external[parts.netloc or parts.scheme] += 1
                continue
            if parts.scheme or link.startswith("javascript:"):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or not target.resolve().is_relative_to(site.resolve()):
                broken.append("%s: %s (no such file)" % (path.relative_to(site), link))
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append("%s: %s (no such anchor)" % (path.relative_to(site), link))
    print("links: %d pages, %d internal links checked, external (not fetched): %s" % (
        len(pages), sum(len(p.links) for p in pages.values()) - sum(external.values()),
        ", ".join("%s %d" % item for item in sorted(external.items())) or "none"))
    for line in broken:
        print("BROKEN " + line)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
