"""Read untrusted input within fixed bounds: line length, YAML size and YAML aliases.

Inputs come from strangers (pasted logs, case folders) and from documentation builds, so no input
may make reportgen's memory or time grow faster than the input itself:

- a line longer than ``MAX_LINE_BYTES`` is never held whole: it is read in ``CHUNK`` pieces and
  reported as one overlong line (its bytes still count, its text is not parsed);
- a YAML file (``case.yaml``, ``prefixes.yaml``) is refused above ``MAX_YAML_BYTES``, and when its
  aliases would expand it beyond ``MAX_YAML_NODES`` nodes ("billion laughs": a few hundred bytes
  that become gigabytes once printed, because each alias repeats a whole node). The check walks the
  composed node graph once, before anything is constructed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from reportgen import progress
from reportgen.errors import InputError

MAX_LINE_BYTES = 64 * 1024  # far above any kernel log line (printk's LOG_LINE_MAX is 1024 bytes)
CHUNK = 1 << 20
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # nodes after expanding every alias: 30 doubling aliases would make 2**30


class RawLine:
    """One input line: its 1-based number, its bytes (empty when over the cap) and its length.

    A plain class, not a NamedTuple: compiled, its constructor is native, where a NamedTuple's
    __new__ is interpreted Python called for every line read (docs/performance.md, "Session 7").
    """

    def __init__(self, number: int, data: bytes, size: int) -> None:
        self.number = number
        self.data = data
        self.size = size  # bytes in the line without its newline, also when ``data`` was dropped

    @property
    def overlong(self) -> bool:
        return self.size > MAX_LINE_BYTES


def raw_lines(source: Path | BinaryIO, max_line: int = MAX_LINE_BYTES) -> Iterator[RawLine]:
    """Yield the lines of a file (a path, or a binary stream such as stdin), holding at most
    about ``2 * CHUNK + max_line`` bytes at a time (a chunk and its lines). A line longer than
    ``max_line`` comes out with empty ``data`` and its true ``size``. Each chunk read is told to
    the progress display (reportgen.progress), once per chunk, not per line.
    """
    if isinstance(source, Path):
        with source.open("rb") as fh:
            yield from raw_lines(fh, max_line)
        return
    watch = progress.watch(source)
    number = 0
    pending = b""  # the start of the current line, at most max_line bytes
    skipped = 0  # bytes of the current line dropped after it passed max_line
    offset = 0
    while chunk := source.read(CHUNK):
        offset += len(chunk)
        lines = chunk.split(b"\n")  # one C call per chunk, not a find() per line
        rest = lines.pop()
        if lines:
            number += 1
            size = skipped + len(pending) + len(lines[0])
            yield RawLine(number, b"" if size > max_line else pending + lines[0], size)
            pending, skipped = b"", 0
            for data in itertools.islice(lines, 1, None):
                number += 1
                size = len(data)
                yield RawLine(number, data if size <= max_line else b"", size)
        if skipped or len(pending) + len(rest) > max_line:
            skipped += len(pending) + len(rest)
            pending = b""
        else:
            pending += rest
        if watch is not None:
            watch.read(offset, number)
    if pending or skipped:
        yield RawLine(number + 1, pending, skipped + len(pending))


def overlong_reason(size: int) -> str:
    return f"line longer than {MAX_LINE_BYTES} bytes ({size} bytes): not parsed"


class _Refused(Exception):
    """A YAML document over one of the limits."""


# libyaml's parser when present (pure-Python PyYAML takes ~1 s a megabyte); both are safe loaders.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _expanded_size(node: yaml.Node, memo: dict[int, int], busy: set[int]) -> int:
    """Nodes in the document once every alias is expanded; _Refused beyond MAX_YAML_NODES or on a cycle."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in busy:
        raise _Refused("an alias refers to itself")
    busy.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo, busy) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo, busy) + _expanded_size(v, memo, busy) for k, v in node.value)
    busy.discard(key)
    if size > MAX_YAML_NODES:
        raise _Refused(f"expands to more than {MAX_YAML_NODES} nodes through aliases")
    memo[key] = size
    return size


def load_yaml(path: Path) -> Any:
    """Load a small YAML file safely; InputError names the file (and line) when it is refused."""
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise InputError(str(path), None, f"YAML file of {size} bytes refused: the limit is {MAX_YAML_BYTES}")
    try:
        with path.open("rb") as fh:
            text = fh.read(MAX_YAML_BYTES + 1).decode("utf-8")
        loader = SAFE_LOADER(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _expanded_size(node, {}, set())
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        raise InputError(str(path), None, f"not UTF-8 text: {exc}") from exc
    except _Refused as exc:
        raise InputError(str(path), None, f"YAML refused: {exc}") from exc
    except RecursionError as exc:
        raise InputError(str(path), None, "not valid YAML: nested too deeply") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(str(path), mark.line + 1 if mark else None, f"not valid YAML: {exc}") from exc
