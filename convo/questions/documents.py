"""Passages from the documents people have: a web page saved as HTML, a PDF, a Word (.docx) file.

Each reader returns the text as a reader of the document sees it: paragraphs separated by a blank
line, a heading or a list item a paragraph of its own, table rows as cells joined by ", "; without
what is not the text (scripts, styles, navigation, code blocks, citation marks like "[12]", page
numbers and the running headers a PDF repeats on every page). Questions are then asked about the
text, not about "[edit]" or "Page 3 of 7".

A file that cannot be read raises ``ValueError`` with the reason in words (the caller names the file).
"""
from __future__ import annotations

import io
import logging
import re
import zipfile
from collections import Counter
from html.parser import HTMLParser

HTML_SUFFIXES = (".html", ".htm", ".xhtml")
PDF_SUFFIXES = (".pdf",)
DOCX_SUFFIXES = (".docx",)
MAX_DOCUMENT_BYTES = 20_000_000
"""Largest HTML, PDF or .docx file read (images and fonts make them far larger than their text, which
is still capped at the passage limit)."""
MAX_PDF_PAGES = 500
MAX_DOCX_XML_BYTES = 50_000_000
"""Largest uncompressed document.xml of a .docx (a zip: a few KB can unpack to gigabytes)."""

_CITATION = re.compile(r"\[(?:\d{1,4}(?:[–-]\d{1,4})?|[a-z]|note \d+|citation needed|clarification needed|edit)\]",
                       re.IGNORECASE)
"""Wikipedia's reference marks ("[12]", "[a]", "[note 3]"), its "[citation needed]" and "[edit]" links."""


def _paragraphs(blocks: list[str]) -> str:
    """Blocks of text -> paragraphs separated by a blank line, spaces collapsed, empty ones left out."""
    out = []
    for block in blocks:
        lines = [" ".join(_CITATION.sub("", line).split()) for line in block.split("\n")]
        text = "\n".join(line for line in lines if line)
        if text:
            out.append(text)
    return "\n\n".join(out)


# ------------------------------------------------------------------------------------------------ HTML

_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "math", "head", "nav", "aside", "footer",
                      "form", "button", "select", "option", "textarea", "iframe", "canvas", "object", "pre", "figure",
                      "dialog"})
"""Elements whose content is not the document's text. ``pre`` is a code block (left out of Markdown
too; inline ``code`` is kept), ``figure`` goes with its caption (a caption alone reads as a fragment)."""
_SKIPPED_ROLES = frozenset({"navigation", "complementary", "contentinfo", "search", "banner", "menu"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                   "track", "wbr"})
_BLOCKS = frozenset({"p", "div", "section", "article", "main", "header", "blockquote", "li", "dd", "dt", "ul", "ol",
                     "dl", "table", "caption", "h1", "h2", "h3", "h4", "h5", "h6", "address", "details", "summary",
                     "body", "html", "hr", "tbody", "thead", "tfoot"})
_CELLS = frozenset({"td", "th"})


class _HTMLText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.skip_stack: list[str] = []  # open elements whose content is skipped (nested ones too)
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.main_stack: list[str] = []  # inside <main>, <article> or role="main": the open tags from the outermost one
        self.main_blocks: list[int] = []  # indexes of the blocks found inside one

    def _skipped(self, tag: str, attrs: dict) -> bool:
        if tag in _SKIPPED or "hidden" in attrs or (attrs.get("aria-hidden") or "").lower() == "true":
            return True
        if (attrs.get("role") or "").lower() in _SKIPPED_ROLES:
            return True
        classes = (attrs.get("class") or "").split()
        # Wikipedia's and MediaWiki's furniture: edit links, reference lists, navigation boxes, hatnotes
        return any(c in ("mw-editsection", "reference", "reflist", "references", "navbox", "hatnote", "noprint",
                         "mw-jump-link", "toc", "catlinks", "printfooter") for c in classes)

    def _end_block(self) -> None:
        text = "".join(self.current)
        if text.strip():
            self._add(text)
        self.current = []

    def _add(self, block: str) -> None:
        if self.main_stack:
            self.main_blocks.append(len(self.blocks))
        self.blocks.append(block)

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            if not self.skip_stack and tag == "br":
                (self.cell if self.cell is not None else self.current).append("\n")
            elif not self.skip_stack and tag == "hr":
                self._end_block()
            return
        attrs = {k.lower(): v for k, v in attrs}
        if self.skip_stack or self._skipped(tag, attrs):
            self.skip_stack.append(tag)
            return
        if self.main_stack or tag in ("main", "article") or (attrs.get("role") or "").lower() == "main":
            if not self.main_stack:
                self._end_block()
            self.main_stack.append(tag)
        if tag == "tr":
            self._end_block()
            self.row = []
        elif tag in _CELLS:
            self.cell = []
        elif tag in _BLOCKS:
            self._end_block()

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        if self.skip_stack:
            if tag in self.skip_stack:  # unclosed children of a skipped element end with it
                del self.skip_stack[len(self.skip_stack) - 1 - self.skip_stack[::-1].index(tag):]
            return
        if tag in _CELLS and self.cell is not None:
            text = " ".join("".join(self.cell).split())
            if self.row is not None and text:
                self.row.append(text)
            elif text:
                self.current.append(text + " ")
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if self.row:  # "Kingdom:" and "Animalia" read "Kingdom: Animalia"
                self._add("".join(cell + (" " if cell.endswith(":") else ", ") for cell in self.row[:-1]) + self.row[-1])
            self.row = None
        elif tag in _BLOCKS:
            self._end_block()
        if tag in self.main_stack:
            last = len(self.main_stack) - 1 - self.main_stack[::-1].index(tag)
            if last == 0:  # the main element ends: so does its last block
                self._end_block()
            del self.main_stack[last:]

    def handle_data(self, data):
        if self.skip_stack:
            return
        data = re.sub(r"[ \t\r\n\f]+", " ", data)  # HTML collapses white space; <br> makes the line breaks
        (self.cell if self.cell is not None else self.current).append(data)

    def text(self) -> str:
        """The page's text; only what its ``<main>`` or ``<article>`` elements hold when they hold any
        (a reader view: a documentation page's menus, help overlays and sidebars are not its text)."""
        self._end_block()
        main = [self.blocks[i] for i in self.main_blocks]
        return _paragraphs(main) or _paragraphs(self.blocks)


def html_to_text(html: str) -> str:
    """The text of an HTML page as a browser shows it, without what is not the article.

    >>> print(html_to_text('<html><head><title>T</title><style>p{}</style></head><body><nav>Home | About</nav>'
    ...                    '<h1>Bees<span class="mw-editsection">[edit]</span></h1><p>Bees make <b>honey</b>.'
    ...                    '<sup class="reference">[1]</sup><br>They live in hives.</p><ul><li>Workers</li><li>Drones'
    ...                    '</ul><table><tr><th>Caste</th><th>Count</th></tr><tr><td>Workers</td><td>50,000</td></tr>'
    ...                    '</table><script>var x = "<p>no</p>";</script><footer>© 2026</footer></body></html>'))
    Bees
    <BLANKLINE>
    Bees make honey.
    They live in hives.
    <BLANKLINE>
    Workers
    <BLANKLINE>
    Drones
    <BLANKLINE>
    Caste, Count
    <BLANKLINE>
    Workers, 50,000
    """
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text()


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def decode_html(data: bytes) -> str:
    """HTML bytes -> text: UTF-8 (what browsers save), else the charset its ``<meta>`` declares."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        declared = _META_CHARSET.search(data[:4096])
        if declared is None:
            raise ValueError(f"is not UTF-8 (invalid byte at position {err.start}) and declares no charset") from None
        charset = declared.group(1).decode("ascii")
        try:
            return data.decode(charset)
        except LookupError:
            raise ValueError(f"declares the charset {charset!r}, which Python does not know") from None
        except UnicodeDecodeError as err2:
            raise ValueError(f"is not valid {charset} text (invalid byte at position {err2.start})") from None


# ------------------------------------------------------------------------------------------------- PDF

_PAGE_NUMBER = re.compile(r"^\s*(?:(?:page\s+)?\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?|(?-i:[ivxlc]{1,7}))\s*$", re.IGNORECASE)
_BULLET = re.compile(r"^[•◦▪●‣∙]\s*")
_LEADERS = re.compile(r"(?:\s?\.){5,}\s*[\divxlc]*\s*")
"""A table of contents' dotted leaders ("2.1 Syntax . . . . . . 2"): such a line is left out."""
_NUMBERED_HEADING = re.compile(r"^(?:\d{1,2}(?:\.\d{1,2})*\.?|[A-Z]\.|Chapter \d+:?)\s+\S")
_SENTENCE_END = re.compile(r"[.!?:;\"”’)。！？؟]$")


def pdf_to_text(data: bytes, max_chars: int | None = None) -> str:
    """The text of a PDF's pages, with its lines joined back into paragraphs.

    A PDF holds lines, not paragraphs: a line is joined to the next unless it is short and ends a
    sentence (a paragraph's last line) or is short and ends none (a heading); a word hyphenated at a
    line's end is joined whole. Lines that are page numbers, or that repeat on most pages (running
    headers and footers), are left out. Raises ``ValueError`` for a file pypdf cannot read, one
    protected by a password, one of more than MAX_PDF_PAGES pages, one without text (a scan), or one
    whose pages hold more than ``max_chars`` characters (checked page by page, so a crafted file
    stops early: pypdf caps each stream at 75 MB unpacked, not a file's sum).
    """
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:  # pragma: no cover - pypdf is in requirements.txt
        raise ValueError("needs pypdf to be read (pip install pypdf)") from None
    # pypdf logs what it repairs ("EOF marker not found") to the app's log with no file named: the
    # user gets the error below when reading fails, and the log stays the app's
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ValueError("is protected by a password: save an unprotected copy and use that")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise ValueError(f"has {len(reader.pages):,} pages; the limit is {MAX_PDF_PAGES}: save the part you want as its own file")
        pages, chars = [], 0
        for page in reader.pages:  # layout mode: vertical space between paragraphs comes out as blank lines
            pages.append((page.extract_text(extraction_mode="layout") or "").splitlines())
            chars += sum(len(line.strip()) for line in pages[-1])
            if max_chars is not None and chars > max_chars:
                raise ValueError(f"holds more than {max_chars:,} characters of text (by page {len(pages)}): "
                                 "save the part you want as its own file")
    except ValueError:
        raise
    except (PyPdfError, OSError, KeyError, TypeError, AttributeError, IndexError, RecursionError, ZeroDivisionError,
            NotImplementedError) as exc:
        raise ValueError(f"is not a PDF that can be read ({type(exc).__name__}: {str(exc)[:120]})") from None
    pages = [_trimmed([" ".join(line.split()) for line in lines]) for lines in pages]
    if not any(any(page) for page in pages):
        raise ValueError("has no text to read (a scanned PDF holds images of its pages: run it through OCR first)")
    repeated = _running_lines([[line for line in page if line] for page in pages])
    # Each page without its running lines and the blank space around them, pages run on: a paragraph
    # cut by a page break is joined again (the short-line rule ends one that ends with its page)
    lines = [line for page in pages for line in _trimmed([
        line for line in page
        if not line or _digitless(line) not in repeated and not _PAGE_NUMBER.match(line) and not _LEADERS.search(line)])]
    return _join_lines(lines)


def _trimmed(lines: list[str]) -> list[str]:
    """``lines`` without the blank ones at the start and the end."""
    start = next((i for i, line in enumerate(lines) if line), len(lines))
    end = len(lines) - next((i for i, line in enumerate(reversed(lines)) if line), len(lines))
    return lines[start:end]


def _digitless(line: str) -> str:
    return re.sub(r"\d+", "#", line)


def _running_lines(pages: list[list[str]]) -> set[str]:
    """Lines found on more than half of the pages (3 pages at least) near a page's top or bottom:
    running titles, page footers ("Page 3 of 7" differs per page, and is matched as a page number)."""
    if len(pages) < 3:
        return set()
    edges = Counter(line for page in pages for line in {_digitless(x) for x in page[:2] + page[-2:]})
    return {line for line, count in edges.items() if count > len(pages) / 2}


def _join_lines(lines: list[str]) -> str:
    """Lines -> paragraphs: a blank line ends one, so does a short line (see :func:`pdf_to_text`)."""
    if not any(lines):
        return ""
    widths = sorted(len(line) for line in lines if line)
    full = widths[int(len(widths) * 0.75)]  # a full line's width: most lines of a page of prose are full
    paragraphs, current = [], ""
    for line in lines:
        if not line:
            if current:
                paragraphs.append(current)
            current = ""
            continue
        short = len(line) < 0.8 * full
        bullet = _BULLET.match(line)
        heading = short and (_NUMBERED_HEADING.match(line) or not _SENTENCE_END.search(line)
                             and _SENTENCE_END.search(current) and line[:1].isupper())
        if current and (bullet or heading):  # a list item, or a heading ("1.2. What is this spec?", or a short
            paragraphs.append(current)       # line that ends no sentence after one that does): a new paragraph
            current = ""
        if bullet:
            line = line[bullet.end():]
        if current.endswith("-") and line[:1].islower() and len(current) > 1 and current[-2].isalpha():
            current = current[:-1] + line  # "infor-" + "mation"
        else:
            current = f"{current} {line}" if current else line
        if short:  # a paragraph's last line, or a heading
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return _paragraphs(paragraphs)


# ------------------------------------------------------------------------------------------------ DOCX

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def docx_to_text(data: bytes) -> str:
    """The text of a Word document's body: each paragraph (headings and list items too) a paragraph,
    each table row its cells joined by ", ". Raises ``ValueError`` for a file that is not a .docx."""
    import xml.etree.ElementTree as ET

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("word/document.xml")
            if info.file_size > MAX_DOCX_XML_BYTES:
                raise ValueError(f"unpacks to {info.file_size / 1e6:.0f} MB of document; the limit is "
                                 f"{MAX_DOCX_XML_BYTES / 1e6:.0f} MB")
            with archive.open(info) as member:  # reads no more than the size checked (a false one fails the CRC)
                xml = member.read(MAX_DOCX_XML_BYTES + 1)
    except ValueError:
        raise
    except (zipfile.BadZipFile, KeyError, OSError, NotImplementedError, EOFError) as exc:
        raise ValueError(f"is not a Word .docx document ({type(exc).__name__}: {str(exc)[:120]})") from None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"holds a document that is not well-formed XML ({exc})") from None
    body = root.find(f"{_W}body")
    blocks: list[str] = []
    for element in body if body is not None else ():
        if element.tag == f"{_W}p":
            blocks.append(_docx_paragraph(element))
        elif element.tag == f"{_W}tbl":
            for row in element.iter(f"{_W}tr"):
                cells = [" ".join(_docx_paragraph(p) for p in cell.iter(f"{_W}p")).strip()
                         for cell in row.iter(f"{_W}tc")]
                blocks.append(", ".join(" ".join(c.split()) for c in cells if c.strip()))
    return _paragraphs(blocks)


def _docx_paragraph(paragraph) -> str:
    parts = []
    for node in paragraph.iter():
        if node.tag == f"{_W}t" and node.text:
            parts.append(node.text)
        elif node.tag == f"{_W}tab":
            parts.append(" ")
        elif node.tag in (f"{_W}br", f"{_W}cr"):
            parts.append("\n")
    return "".join(parts)


# ----------------------------------------------------------------------------------------------- dispatch


def document_kind(name: str, data: bytes) -> str | None:
    """``"pdf"``, ``"html"`` or ``"docx"`` for a document read by this module, else None (plain text
    or Markdown). A PDF is known by its first bytes whatever its name; HTML and .docx by their suffix."""
    lower = name.lower()
    if data[:1024].lstrip().startswith(b"%PDF-") or lower.endswith(PDF_SUFFIXES):
        return "pdf"
    if lower.endswith(HTML_SUFFIXES):
        return "html"
    if lower.endswith(DOCX_SUFFIXES):
        return "docx"
    return None


def document_to_text(kind: str, data: bytes, max_chars: int | None = None) -> str:
    """The text of a document of ``kind`` (see :func:`document_kind`); a PDF is read no further than
    ``max_chars`` characters (the caller checks the others' text, read whole from their bounded size)."""
    if kind == "pdf":
        return pdf_to_text(data, max_chars)
    if kind == "docx":
        return docx_to_text(data)
    return html_to_text(decode_html(data))
