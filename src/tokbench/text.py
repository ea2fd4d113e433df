"""Untrusted text (config names, model ids, notes, error messages, someone else's store) made safe for where
it goes: a terminal, a file name, a spreadsheet cell. One place, so every writer uses the same rules."""

from __future__ import annotations

import re
import unicodedata

# C0 controls but tab and newline, DEL, C1 controls (ESC sequences and their 8-bit forms), and the bidi
# overrides that make a terminal show text in another order than it is.
_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's CSV injection list).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")  # "-3.5" stays a number
MAX_FILENAME_STEM = 120


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: object, *, newlines: bool = True) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), so it cannot drive the terminal.

    With ``newlines=False`` line breaks are escaped too, for fields that must stay on one line.
    """
    cleaned = _TERMINAL_UNSAFE.sub(_escape, str(text))
    return cleaned if newlines else cleaned.replace("\n", "\\n").replace("\t", "\\t")


def safe_filename(name: str, fallback: str = "run") -> str:
    """A file name stem from an untrusted name: ASCII letters, digits and ``._+-`` only, no path, no dot file.

    ``../../etc/x`` becomes ``etc-x``; an empty or all-punctuation name becomes ``fallback``.
    """
    ascii_name = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    stem = _FILENAME_UNSAFE.sub("-", ascii_name).strip(".-_+")
    stem = re.sub(r"\.{2,}", ".", stem)[:MAX_FILENAME_STEM].strip(".-_+")
    return stem or fallback


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: strings that would start a formula get a leading quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value
