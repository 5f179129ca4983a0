"""Redact a case's input before it is parsed, so every output shows the same pseudonyms.

The hook sits where input is read: each trace and snapshot file of a case is copied, line by line,
through a :class:`reportgen.redact.Redactor` into a private folder, and the case is then read from
there like any other. Line numbers stay the same (one line out per line in), so every citation
still points at the line it names. The manifest's words (title, description, notes, the ``host``
of a snapshot) and the file names are redacted too, so nothing the parsers or renderers see holds
an original address, MAC or host name.

Host names are gathered from the whole case first, because a name must be known before the first
line that holds it is copied: syslog/journal line headers, the manifest's snapshot hosts, the
container names of ``docker network inspect`` and the ``kernel.hostname`` sysctl.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from reportgen.redact import Redactor, syslog_hosts
from reportgen.sources.bounded import MAX_LINE_BYTES, raw_lines
from reportgen.sources.case import CaseSpec, _rel
from reportgen.sources.framing import decode_line

_HOSTNAME_SYSCTL = re.compile(r"^\s*kernel\.hostname\s*=\s*(\S+)\s*$", re.M)
_OWN_HOST = "host"  # the manifest's default "whose view": the host itself, not a name


def case_names(spec: CaseSpec) -> set[str]:
    """Return the host and container names a case's input holds."""
    names = {host for _, _, host in spec.snapshots if host != _OWN_HOST}
    for path in spec.traces:
        names |= syslog_hosts(decode_line(r.data, r.number == 1) for r in raw_lines(path) if not r.overlong)
    for path, kind, _ in spec.snapshots:
        text = path.read_text(encoding="utf-8", errors="replace")
        names |= set(_HOSTNAME_SYSCTL.findall(text))
        if (kind or "").removeprefix("attachment:") == "docker-network" or '"Containers"' in text:
            names |= _docker_names(text)
    return names


def _docker_names(text: str) -> set[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return set()  # the parser reports the bad JSON with its line; here it names nobody
    nets = data if isinstance(data, list) else [data]
    return {
        str(c["Name"])
        for net in nets
        if isinstance(net, dict)
        for c in (net.get("Containers") or {}).values()
        if isinstance(c, dict) and c.get("Name")
    }


def redact_case(spec: CaseSpec, redactor: Redactor, into: Path) -> CaseSpec:
    """Copy the case's files through the redactor into ``into`` and return the spec that reads them."""
    redactor.add_names(sorted(case_names(spec)))
    into.mkdir(parents=True, exist_ok=True)
    taken: set[Path] = set()

    def copy(path: Path) -> Path:
        target = into / _file_name(redactor, _rel(path, spec.base))
        while target in taken:  # two originals whose redacted names collide stay two files
            target = target.with_name("_" + target.name)
        taken.add(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8", newline="\n") as fh:
            for raw in raw_lines(path):  # the same line cap as the case reader: never a whole 200 MB line
                if raw.overlong:
                    # Never parsed, so nothing to redact: a filler over the cap keeps it listed as overlong.
                    fh.write("x" * (MAX_LINE_BYTES + 1) + "\n")
                else:
                    fh.write(redactor.text(decode_line(raw.data, raw.number == 1)) + "\n")
        return target

    return replace(
        spec,
        title=redactor.text(spec.title),
        description=redactor.text(spec.description),
        notes=[redactor.text(n) for n in spec.notes],
        base=into,
        traces=[copy(p) for p in spec.traces],
        snapshots=[(copy(p), kind, redactor.text(host)) for p, kind, host in spec.snapshots],
    )


def _file_name(redactor: Redactor, name: str) -> str:
    """Redact a file name: addresses, and host names even where a name runs into "-ip-addr.txt"."""
    name = redactor.text(name)
    for original, pseudonym in sorted(redactor.mapping["name"].items(), key=lambda kv: -len(kv[0])):
        name = re.sub(rf"(?<![A-Za-z0-9]){re.escape(original)}(?![A-Za-z0-9])", pseudonym, name)
    return name


def write_mapping(redactor: Redactor, path: Path) -> None:
    """Write the pseudonym mapping readable by the owner only (mode 0600), never beside the reports' text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(redactor.mapping, indent=2, sort_keys=True) + "\n"
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(data, encoding="utf-8")
