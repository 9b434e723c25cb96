"""CSV as the API writes it (the usage report's and the audit log's): one writer for every export, so
no cell a user typed can run in a spreadsheet (billing-rules.md, "Where features meet").

A cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return) is written with a leading ``'``, unless it is a number: ``-1.500000`` stays a
number. Pure: no I/O.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")  # what the API writes as numbers: credits, dollars


def safe_cell(value: str) -> str:
    """``value`` as a cell no spreadsheet runs: a leading ``'`` before what would be a formula."""
    if value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    """Rows as CSV (RFC 4180, CRLF), every cell made safe with :func:`safe_cell`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()
