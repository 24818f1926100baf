"""HTML → markdown text: scripts, styles and navigation dropped, headings as ``#`` lines.

Blocks are separated by blank lines, so the markdown chunker keeps the heading path.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from docqa_core.errors import InvalidRequest


def html_to_markdown(html: str) -> tuple[str, str]:
    """Return ``(text, title)``: the visible text of an HTML page with markdown headings."""
    parser = _HtmlToMarkdown()
    try:
        parser.feed(html)
        parser.close()
    except Exception as exc:  # html.parser is lenient; this is belt and braces
        raise InvalidRequest(f"the HTML could not be parsed: {exc}") from exc
    return parser.result()


_SKIP_TAGS = frozenset(
    {"script", "style", "nav", "noscript", "template", "svg", "iframe", "object", "head"}
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote",
        "ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr",
        "caption", "figure", "figcaption", "form", "fieldset", "address", "hr", "body", "html",
        "details", "summary",
    }
)  # fmt: skip
_SPACES = re.compile(r"\s+")
_VOID_TAGS = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr", "area", "col"})


class _HtmlToMarkdown(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._blocks: list[str] = []
        self._current: list[str] = []
        self._skip: list[str] = []  # open skipped elements
        self._heading = 0
        self._pre = 0
        self._in_title = False
        self._title: list[str] = []
        self._first_h1: str | None = None
        self._cell_open = False
        self._rows: list[str] | None = None  # rows of the open table

    # The parser -----------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
            return
        if tag == "body" and "head" in self._skip:  # an unclosed <head>
            self._skip = [t for t in self._skip if t != "head"]
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self._skip.append(tag)
            return
        if self._skip:
            return
        if tag == "br":
            self._current.append("\n")
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
        elif tag == "pre":
            self._flush()
            self._pre += 1
        elif tag == "table":
            self._flush()
            self._rows = []
        elif tag in ("td", "th"):
            if self._cell_open or self._text_of_current().strip():
                self._current.append(" | ")
            self._cell_open = True
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag == "li":
                self._current.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            return
        if tag in _SKIP_TAGS:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if self._skip:
            return
        if tag in _HEADINGS:
            self._flush()
        elif tag == "pre":
            self._flush()
            self._pre = max(0, self._pre - 1)
        elif tag == "tr":
            self._cell_open = False
            self._flush(join_lines=True)
        elif tag == "table":
            self._flush(join_lines=True)
            if self._rows:
                self._blocks.append("\n".join(self._rows))
            self._rows = None
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and not self._skip:
            self._current.append("\n")
        elif tag not in _VOID_TAGS:
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)
            return
        if self._skip:
            return
        self._current.append(data if self._pre else _SPACES.sub(" ", data))

    # Output ---------------------------------------------------------------------------------

    def result(self) -> tuple[str, str]:
        self._flush()
        title = " ".join("".join(self._title).split()) or self._first_h1 or ""
        return "\n\n".join(self._blocks), title

    def _text_of_current(self) -> str:
        return "".join(self._current)

    def _flush(self, *, join_lines: bool = False) -> None:
        raw = self._text_of_current()
        self._current = []
        if self._pre:
            body = raw.strip("\n")
            if body.strip():
                self._blocks.append(f"```\n{body}\n```")
            return
        lines = [" ".join(line.split()) for line in raw.split("\n")]
        lines = [line for line in lines if line and line != "-"]
        if not lines:
            self._heading = 0
            return
        if self._heading:
            text = " ".join(lines).lstrip("#").strip()
            if text:
                self._blocks.append(f"{'#' * self._heading} {text}")
                if self._heading == 1 and self._first_h1 is None:
                    self._first_h1 = text
            self._heading = 0
            return
        block = " ".join(lines) if join_lines else "\n".join(lines)
        if self._rows is not None:
            self._rows.append(block)
        else:
            self._blocks.append(block)
