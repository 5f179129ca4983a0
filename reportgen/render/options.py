"""What a reader asked of the renderers: detail level, terminal, PDF appendix, Markdown budget."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    """How much of each packet the text and Markdown outputs tell (after ovn-trace's three levels)."""

    MINIMAL = "minimal"  # one line per conversation and per folded packet group: the golden format
    SUMMARY = "summary"  # plus each hop in one line, NAT and the verdict
    DETAILED = "detailed"  # plus every explanation line, skipped hooks and the rules


@dataclass(frozen=True)
class RenderOptions:
    """Options every renderer reads; the defaults give the files ``report`` writes."""

    level: Level = Level.DETAILED
    colour: bool = False  # ANSI colour in text: only for a terminal, never for a file or a pipe
    width: int = 100  # text columns to fit
    appendix: bool = False  # PDF: every snapshot and trace line, not only the cited excerpts
    markdown_limit: int = 60_000  # characters: a GitHub issue body holds 65,536
