"""Make input text safe where it lands: a terminal or text file, and XML (SVG).

Input lines may carry any byte but a newline. In text and Markdown output, control characters
(C0 but tab and newline, DEL, C1) and the bidirectional overrides are shown escaped (``\\x1b``,
``\\u202e``), so an ANSI/OSC sequence from a log cannot drive the reader's terminal and reversed text
cannot hide what a line says. XML 1.0 forbids most C0 characters even as character references, so
in SVG they, DEL and C1 become U+FFFD (the Unicode replacement character).
"""

from __future__ import annotations

import re

_TERMINAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def terminal_safe(text: str) -> str:
    """Escape control and bidi-override characters; tabs and newlines stay."""
    return _TERMINAL.sub(_escape, text)


def xml_safe(text: str) -> str:
    """Replace characters XML 1.0 cannot hold (and C1 controls) with U+FFFD."""
    return _XML.sub("\ufffd", text)
