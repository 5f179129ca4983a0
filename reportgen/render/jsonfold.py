"""Fold what alike conversations and packets share out of the JSON report, and unfold it again.

Writing (render/jsonout.py) and reading use the same two pairs of functions, so what a reader
gets back is by construction what the writer had (tests/test_json.py holds them to that on every
sample):

* A conversation's entry (schema 4's ``conversations[]`` object) is cut by ``fold_conversation``
  into what a *kind* of conversation shares (its answer, summary, assumptions and prediction as
  texts with the member's own addresses and ports cut out, its groups' behaviours, counts and
  files) and the member's own row (its id, those addresses and ports, its groups' ids, packets,
  lines and stamps). ``unfold_conversation(kind, row)`` gives the entry back.
* A packet's object (schema 4's report.jsonl line) is written as a diff against the object of its
  behaviour's example packet (``diff``); ``patch(example, diff)`` gives it back.

``read_conversations`` and ``read_packets`` rebuild schema 4's objects from a schema 5 report
(docs/json-schema.md).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

# A text with the member's values cut out: literal strings and integers, each the index of a member
# value (``values``) that stands there as text.
Parts = list[str | int]

# Characters that continue an address or a number: a value with one of these beside it is part of a
# longer token (port 80 inside 1080, 10.0.0.80 or eth80), not the member's own value.
_TOKEN = frozenset(string.ascii_letters + string.digits + "_.")


def _bounded(text: str, i: int, j: int) -> bool:
    """Is text[i:j] a whole token (a sentence's full stop may follow it)?"""
    if i > 0 and text[i - 1] in _TOKEN:
        return False
    if j < len(text) and text[j] in _TOKEN:
        return text[j] == "." and (j + 1 == len(text) or text[j + 1] not in _TOKEN)
    return True


def cut_values(text: str | Parts, slots: Sequence[tuple[str, int]]) -> str | Parts:
    """``text`` (or parts of it) with each whole-token occurrence of a slot's text replaced by the
    slot's index.

    ``slots`` are (text, index), longest text first, so an address is cut before a port that is part
    of it. Returns ``text`` itself when nothing was cut, else its parts (``fill_values`` joins them).
    Whatever is cut, filling the parts with the same values gives ``text`` back exactly: the cut
    only decides how much alike conversations share.
    """
    parts: Parts = [text] if isinstance(text, str) else text
    for needle, index in slots:
        out: Parts = []
        for part in parts:
            if isinstance(part, int) or needle not in part:
                out.append(part)
                continue
            start, i = 0, part.find(needle)
            while i >= 0:
                j = i + len(needle)
                if _bounded(part, i, j):
                    if i > start:
                        out.append(part[start:i])
                    out.append(index)
                    start = j
                    i = part.find(needle, j)
                else:
                    i = part.find(needle, i + 1)
            if start < len(part):
                out.append(part[start:])
        parts = out
    return parts[0] if len(parts) == 1 and isinstance(parts[0], str) else parts


@functools.lru_cache(maxsize=64)
def _citation(files: tuple[str, ...]) -> re.Pattern[str]:
    """A citation of a line of one of ``files`` ("kern.log:113"), its number captured."""
    names = "|".join(re.escape(f) for f in sorted(files, key=len, reverse=True))
    return re.compile(rf"(?<![\w.])(?:{names}):([0-9]+)(?![0-9])")


def _cut_citations(text: str, pattern: re.Pattern[str], ref: Callable[[Any], int]) -> str | Parts:
    """``text`` with the line number of each citation cut out as a member value."""
    parts: Parts = []
    start = 0
    for m in pattern.finditer(text):
        parts += [text[start : m.start(1)], ref(int(m.group(1)))]
        start = m.end(1)
    if not parts:
        return text
    if start < len(text):
        parts.append(text[start:])
    return parts


def _cut_file_citations(text: str, name: str, ref: Callable[[Any], int]) -> str | Parts:
    """``_cut_citations(text, _citation((name,)), ref)``, found with str.find: the regex tries its
    look-behind at every position of every text, and was a tenth of writing the nft bench input's
    JSON, where every conversation cites the one trace file (tests/test_scale.py holds the two equal)."""
    needle = name + ":"
    i = text.find(needle)
    if i < 0:
        return text
    parts: Parts = []
    start = 0
    n = len(text)
    while i >= 0:
        j = k = i + len(needle)
        while k < n and text[k] in _DIGITS:
            k += 1
        # The regex's (?<![\w.]): \w of a str pattern is a character str.isalnum() accepts, or "_".
        if k > j and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_.")):
            parts += [text[start:j], ref(int(text[j:k]))]
            start = k
            i = text.find(needle, k)
        else:
            i = text.find(needle, i + 1)
    if not parts:
        return text
    if start < n:
        parts.append(text[start:])
    return parts


_DIGITS = frozenset("0123456789")  # the regex's [0-9]: str.isdigit() accepts other scripts' digits too


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def fill_values(text: str | Parts | None, values: Sequence[Any]) -> str | None:
    """The text of parts (cut_values) with the member's values put back; a plain text as it is."""
    if text is None or isinstance(text, str):
        return text
    return "".join(p if isinstance(p, str) else _as_text(values[p]) for p in text)


def fold_conversation(entry: Mapping[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """Cut a conversation's entry into (what its kind shares, the member's own row).

    The member's values are the distinct addresses and ports of its identity (its original
    endpoints, then its groups' NAT before/after, in that order), then the line numbers its texts
    cite of its own trace files. The shared part refers to them by
    index: ``original`` and each group's ``nat`` hold indexes where the entry holds addresses and
    ports, and every text holds parts (cut_values). The row is
    ``[id, values, [[group id, packets, [line runs per file], first_stamp, last_stamp], ...]]``.
    """
    member = _Member()
    original = entry["original"]
    shared_original = None if original is None else [member.endpoint(e) for e in original]
    groups, rows = [], []
    for g in entry["groups"]:
        groups.append(
            {
                "behaviour": g["behaviour"],
                "count": g["count"],
                "files": [f["file"] for f in g["lines"]],
                "nat": [
                    {"before": member.endpoint(n["before"]), "after": member.endpoint(n["after"])} for n in g["nat"]
                ],
            }
        )
        rows.append([g["id"], g["packets"], [f["runs"] for f in g["lines"]], g["first_stamp"], g["last_stamp"]])
    # The texts also cite the member's own lines ("kern.log:113"): those numbers are its values too
    # (after its addresses and ports, in the order the texts cite them). A citation of another file
    # (a ruleset snapshot's rule) is what the kind shares.
    member.texts(tuple(dict.fromkeys(f for g in groups for f in g["files"])))
    cut = member.cut
    p = entry["prediction"]
    shared = {
        "proto": entry["proto"],
        "summary": cut(entry["summary"]),
        "answer": cut(entry["answer"]),
        "worst": entry["worst"],
        "assumptions": [cut(a) for a in entry["assumptions"]],
        "prediction": None
        if p is None
        else {
            **p,
            "summary": cut(p["summary"]),
            "predicted": cut(p["predicted"]),
            "observed": cut(p["observed"]),
            "conditions": [cut(c) for c in p["conditions"]],
        },
        "original": shared_original,
        "groups": groups,
    }
    if "late_of" in entry:  # the earlier conversation's id is part of what the kind states
        shared["late_of"] = entry["late_of"]
    return shared, [entry["id"], member.values, rows]


def _longest_first(slot: tuple[str, int]) -> tuple[int, int]:
    return -len(slot[0]), slot[1]


class _Member:
    """One conversation's own values as fold_conversation collects them. A class, not closures over
    local variables: nested functions and their shared scope refer to each other, a reference cycle
    per conversation that only the cyclic garbage collector frees (pipeline.py runs it rarely)."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.index: dict[tuple[type, Any], int] = {}
        self.slots: list[tuple[str, int]] = []
        self.files: tuple[str, ...] = ()
        self.citation: re.Pattern[str] | None = None

    def ref(self, value: Any) -> int:
        key = (type(value), value)  # port 80 and an address "80" are different values
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.values)
            self.values.append(value)
        return i

    def endpoint(self, ep: Mapping[str, Any]) -> dict[str, int]:
        return {"addr": self.ref(ep["addr"]), "port": self.ref(ep["port"])}

    def texts(self, files: tuple[str, ...]) -> None:
        """Ready to cut texts citing ``files``, once the addresses and ports are collected."""
        self.slots = sorted(
            ((_as_text(v), i) for i, v in enumerate(self.values) if v is not None and _as_text(v)),
            key=_longest_first,
        )
        self.files = files
        self.citation = _citation(files) if len(files) > 1 else None

    def cut(self, text: str | None) -> str | Parts | None:
        if text is None:
            return None
        if self.citation is not None:
            return cut_values(_cut_citations(text, self.citation, self.ref), self.slots)
        return cut_values(_cut_file_citations(text, self.files[0], self.ref) if self.files else text, self.slots)


def unfold_conversation(kind: Mapping[str, Any], row: Sequence[Any]) -> dict[str, Any]:
    """A member's conversation entry (schema 4's), from its kind and its row (fold_conversation)."""
    conv_id, values, rows = row

    def endpoint(ep: Mapping[str, int]) -> dict[str, Any]:
        return {"addr": values[ep["addr"]], "port": values[ep["port"]]}

    groups = []
    for g, (gid, packets, runs, first_stamp, last_stamp) in zip(kind["groups"], rows, strict=True):
        groups.append(
            {
                "id": gid,
                "behaviour": g["behaviour"],
                "count": g["count"],
                "packets": packets,
                "first_stamp": first_stamp,
                "last_stamp": last_stamp,
                "lines": [{"file": f, "runs": r} for f, r in zip(g["files"], runs, strict=True)],
                "nat": [{"before": endpoint(n["before"]), "after": endpoint(n["after"])} for n in g["nat"]],
            }
        )
    p = kind["prediction"]
    late = {"late_of": kind["late_of"]} if "late_of" in kind else {}
    return {
        "id": conv_id,
        "groups": groups,
        "answer": fill_values(kind["answer"], values),
        "worst": kind["worst"],
        "assumptions": [fill_values(a, values) for a in kind["assumptions"]],
        "proto": kind["proto"],
        "summary": fill_values(kind["summary"], values),
        "original": None if kind["original"] is None else [endpoint(e) for e in kind["original"]],
        "prediction": None
        if p is None
        else {
            **p,
            "summary": fill_values(p["summary"], values),
            "predicted": fill_values(p["predicted"], values),
            "observed": fill_values(p["observed"], values),
            "conditions": [fill_values(c, values) for c in p["conditions"]],
        },
        **late,
    }


class Unpatchable(ValueError):
    """Two objects a diff cannot express (an object whose keys differ from the example's)."""


def diff(base: Any, new: Any) -> Any:
    """What turns ``base`` into ``new`` (patch): for two objects with the same keys, an object of the
    keys whose values differ, each with its own diff; for two lists of one length, an object of the
    indexes (as text) whose items differ; otherwise ``new`` itself. Raises Unpatchable where the
    result would be misread: ``new`` an object but ``base`` a list or an object with other keys."""
    if type(new) is dict:
        if type(base) is dict:
            if base.keys() != new.keys():
                raise Unpatchable(sorted(set(base) ^ set(new)))
            # Most differing values are scalars (a stamp, an IP id): they are taken as they are, and
            # only containers go on to _change (a call per value cost two thirds of writing
            # report.jsonl).
            return {
                k: v if (t := type(v)) is not dict and t is not list else _change(b, v)
                for k, v in new.items()
                if (b := base[k]) != v
            }
        if type(base) is list:
            raise Unpatchable("an object where the example has a list")
        return new
    if type(new) is list and type(base) is list and len(new) == len(base):
        return {
            str(i): v if (t := type(v)) is not dict and t is not list else _change(b, v)
            for i, (b, v) in enumerate(zip(base, new, strict=True))
            if b != v
        }
    return new


def _change(base: Any, new: dict[str, Any] | list[Any]) -> Any:
    """The diff of one differing container. A small object (a line reference, an endpoint) whose
    keys are the example's is given whole: patching by key gives the same object, and diffing it
    cost more than it saved (half the diffing time of the repetitive benchmark's packets)."""
    if type(new) is dict and len(new) <= 2 and type(base) is dict and base.keys() == new.keys():
        return new
    return diff(base, new)


def patch(base: Any, change: Any) -> Any:
    """``base`` with ``change`` (a diff) applied; ``base`` is not modified."""
    if type(change) is not dict or type(base) not in (dict, list):
        return change
    out = dict(base) if type(base) is dict else list(base)
    for k, v in change.items():
        key = k if type(out) is dict else int(k)
        out[key] = patch(out[key], v)
    return out


def read_conversations(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every conversation entry of a schema 5 report.json (schema 4's ``conversations[]`` objects),
    kind by kind, members in the order they were written."""
    for kind in doc["conversation_kinds"]:
        for row in kind["members"]:
            yield unfold_conversation(kind, row)


# The keys a behaviours[] entry has that its example packet's object does not.
BEHAVIOUR_ONLY = ("id", "counts", "example")


def read_packets(doc: Mapping[str, Any], lines: Iterable[str | bytes]) -> Iterator[dict[str, Any]]:
    """Every packet's whole object (schema 4's report.jsonl line, with its ``behaviour``) from a
    schema 5 report.json and its report.jsonl lines, in file order."""
    examples = {b["id"]: {k: v for k, v in b.items() if k not in BEHAVIOUR_ONLY} for b in doc["behaviours"]}
    for line in lines:
        obj = json.loads(line)  # not orjson: it reads an integer beyond 64 bits as a float
        if "diff" in obj:
            obj.update(copy.deepcopy(patch(examples[obj["behaviour"]], obj.pop("diff"))))
        yield obj
