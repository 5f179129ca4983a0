"""Errors that name the input they are about."""

from __future__ import annotations


class InputError(Exception):
    """Bad input: carries the file, the 1-based line (when known) and what is wrong."""

    def __init__(self, file: str, line: int | None, message: str, text: str | None = None) -> None:
        self.file = file
        self.line = line
        self.message = message
        self.text = text
        where = f"{file}:{line}" if line else file
        detail = f"\n    {text!r}" if text is not None else ""
        super().__init__(f"{where}: {message}{detail}")
