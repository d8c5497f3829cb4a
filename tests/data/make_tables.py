"""Writes the CSV, TSV and Excel fixtures as other tools write them: pandas ``to_csv`` (quoting cells
with commas, quotes and line breaks), Excel's ";"-separated CSV of many locales with a UTF-8 byte-order
mark, a tab-separated file, and workbooks written by XlsxWriter (pandas' ``to_excel`` and a sheet laid
out by hand), which convo reads with another library (openpyxl). Run from the repository root:
``python tests/data/make_tables.py``.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent


def flat_questions() -> list[dict]:
    """good/squad_hf.jsonl as flat questions: its first answer, an empty cell when it has none."""
    rows = []
    for line in (HERE / "good" / "squad_hf.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        texts = record["answers"]["text"]
        rows.append({"context": record["context"], "question": record["question"], "answer": texts[0] if texts else ""})
    return rows


def main() -> None:
    pd.DataFrame(flat_questions()).to_csv(HERE / "good" / "flat_qa.csv", index=False)
    alpaca = [{k: r.get(k, "") for k in ("instruction", "input", "output")}
              for r in json.loads((HERE / "good" / "alpaca.json").read_text(encoding="utf-8")) if "history" not in r]
    alpaca.append({"instruction": 'Write a haiku about "rain", in two lines.', "input": "",
                   "output": "Grey clouds, quiet roofs,\nthe street shines; a cat waits, dry."})
    pd.DataFrame(alpaca).to_csv(HERE / "good" / "alpaca_excel.csv", index=False, sep=";", encoding="utf-8-sig")
    pd.DataFrame(alpaca).to_csv(HERE / "good" / "alpaca.tsv", index=False, sep="\t")
    # Excel's "CSV (Comma delimited)": the Windows code page (cp1252 in Western locales), not UTF-8
    pd.DataFrame([{"instruction": "Name a French pastry.", "input": "", "output": "A crème brûlée, or a café éclair."},
                  {"instruction": "Say thanks in German.", "input": "", "output": "Danke schön – or „Danke“."}]).to_csv(
        HERE / "good" / "alpaca_cp1252.csv", index=False, encoding="cp1252")
    # a spreadsheet of FAQs: a question and its answer a row, no passage
    pd.DataFrame([{"question": "When does the library open?", "answer": "At nine on weekdays, at eleven on Sundays."},
                  {"question": "Can I renew a book online?", "answer": "Yes, twice, from your account page."}]).to_csv(
        HERE / "good" / "faq.csv", index=False)
    # a cell with an unquoted separator (written by hand): row 3 has 4 cells under 3 columns
    (HERE / "bad" / "shifted.csv").write_text(
        "context,question,answer\n"
        "Bees make honey from nectar.,What do bees make?,honey\n"
        "Kilimanjaro is in Tanzania, Africa.,Where is Kilimanjaro?,in Tanzania\n", encoding="utf-8")
    pd.DataFrame({"city": ["Paris", "Lima"], "population": [2_100_000, 10_000_000]}).to_csv(
        HERE / "bad" / "cities.csv", index=False)
    pd.DataFrame(flat_questions()).to_excel(HERE / "good" / "flat_qa.xlsx", index=False, engine="xlsxwriter")
    workbooks()


def workbooks() -> None:
    """An FAQ sheet as people lay one out: a title and a blank row above the header, the table from
    column B, a number, a date and a yes/no as answers, a second sheet; and one with a note typed
    beside the table, in a column the header does not name."""
    import xlsxwriter

    book = xlsxwriter.Workbook(HERE / "good" / "faq_sheet.xlsx")
    sheet = book.add_worksheet("FAQ")
    sheet.write("B1", "Library FAQ", book.add_format({"bold": True, "font_size": 14}))
    sheet.write_row("B3", ["question", "answer"], book.add_format({"bold": True}))
    sheet.write_row("B4", ["When does the library open?", "At nine on weekdays, at eleven on Sundays."])
    sheet.write_row("B5", ["How many books can I borrow?", 12])
    sheet.write("B6", "When did the new wing open?")
    sheet.write_datetime("C6", datetime.datetime(2024, 5, 1), book.add_format({"num_format": "d mmm yyyy"}))
    sheet.write("B7", "Is there wifi?")
    sheet.write_boolean("C7", True)
    book.add_worksheet("Notes").write("A1", "Answers checked in May.")
    book.close()
    book = xlsxwriter.Workbook(HERE / "bad" / "unnamed_column.xlsx")
    sheet = book.add_worksheet()
    sheet.write_row("A1", ["question", "answer"])
    sheet.write_row("A2", ["Can I renew a book online?", "Yes, twice, from your account page."])
    sheet.write_row("A3", ["Do you lend e-books?", "Yes, through the app.", "", "check with IT"])
    book.close()


if __name__ == "__main__":
    main()
