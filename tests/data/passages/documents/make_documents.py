"""Write the document fixtures next to this file with the tools people make them with:

* ``passages.pdf``: the five passages of ``tests/data/passages`` as a printed report, by Chromium's
  print to PDF (Playwright's ``page.pdf``), A5 pages with a running title and "Page N of M";
* ``passages.docx``: the same as a Word document by python-docx (a heading per passage, a table, a
  bulleted list).

and their variants (:func:`write_variants`). ``honeybee.html`` is a Wikipedia article page as a browser
saves it (its menus, table of contents, edit links, reference marks and footer), by hand. Run: ``python tests/data/passages/documents/make_documents.py``
(needs ``playwright`` with /usr/bin/chromium and ``pip install python-docx``).
"""
from __future__ import annotations

import html
from pathlib import Path

HERE = Path(__file__).parent
PASSAGES = HERE.parent
NAMES = ["honeybees", "lighthouse", "marathon", "photosynthesis", "volcano"]


def passages() -> list[tuple[str, list[str]]]:
    return [(name.capitalize(), (PASSAGES / f"{name}.txt").read_text().strip().split("\n\n")) for name in NAMES]


def write_pdf(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    body = "".join(f"<h2>{html.escape(title)}</h2>" + "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
                   for title, paragraphs in passages())
    page_html = (f"<html><head><title>Five short passages</title><style>body{{font:13pt Georgia,serif}}"
                 f"p{{text-align:justify}}</style></head><body><h1>Five short passages</h1>{body}</body></html>")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.set_content(page_html)
        page.pdf(path=str(out), format="A5", display_header_footer=True,
                 margin={"top": "18mm", "bottom": "18mm", "left": "14mm", "right": "14mm"},
                 header_template='<div style="font-size:8px;width:100%;text-align:center">Five short passages</div>',
                 footer_template='<div style="font-size:8px;width:100%;text-align:center">'
                                 'Page <span class="pageNumber"></span> of <span class="totalPages"></span></div>')
        browser.close()


def write_docx(out: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Five short passages", level=1)
    for title, paragraphs in passages():
        document.add_heading(title, level=2)
        for text in paragraphs:
            document.add_paragraph(text)
    document.add_heading("Facts in a table", level=2)
    table = document.add_table(rows=3, cols=2)
    for row, (key, value) in zip(table.rows, [("Subject", "Figure"), ("Workers in a summer colony", "50,000"),
                                              ("Nobel Prize for the waggle dance", "1973")]):
        row.cells[0].text, row.cells[1].text = key, value
    for item in ("Bees make honey from nectar.", "A lighthouse warns ships at night."):
        document.add_paragraph(item, style="List Bullet")
    document.save(str(out))


def write_variants(pdf: Path, bad: Path) -> None:
    """Documents made from ``pdf`` the way people have them: a PDF locked only against changes (no password
    to read it, AES-256: common) and a page saved in Windows-1252 that says so, which read; and the bad
    ones in ``bad`` (each asserted by its exact message): a PDF cut short, one without text (a scan), one
    that needs a password, a .docx that is not a zip, a page of menus and scripts only, and a Windows-1252
    page that declares no charset."""
    import io

    from pypdf import PdfWriter

    def encrypted(user_password: str, algorithm: str) -> bytes:
        writer = PdfWriter(clone_from=io.BytesIO(pdf.read_bytes()))
        writer.encrypt(user_password=user_password, owner_password="bees", algorithm=algorithm)
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    page = "<html><head><meta charset='windows-1252'></head><body><p>Caf\xe9 au lait.</p></body></html>"
    (HERE / "statement.pdf").write_bytes(encrypted("", "AES-256"))
    (HERE / "cafe.html").write_bytes(page.encode("cp1252"))
    (bad / "locked.pdf").write_bytes(encrypted("bees", "AES-128"))
    (bad / "cut.pdf").write_bytes(pdf.read_bytes()[:3000])
    blank = PdfWriter()
    blank.add_blank_page(width=420, height=595)
    with open(bad / "scan.pdf", "wb") as out:
        blank.write(out)
    (bad / "notes.docx").write_bytes(b"PK\x03\x04 not really")
    (bad / "menu.html").write_bytes(b"<nav>Home | About</nav><script>x()</script>")
    (bad / "cafe.htm").write_bytes(page.replace("<meta charset='windows-1252'>", "").encode("cp1252"))


if __name__ == "__main__":
    write_pdf(HERE / "passages.pdf")
    write_docx(HERE / "passages.docx")
    write_variants(HERE / "passages.pdf", PASSAGES / "bad")
    print("wrote the documents in", HERE, "and the bad ones in", PASSAGES / "bad")
