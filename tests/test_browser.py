"""A real headless Chromium opens the HTML report, as a user would: the path must be visible."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from conftest import SAMPLES, SEED_CASES

from reportgen.pipeline import build_report
from reportgen.render.write import write_report
from reportgen.sources.case import load_spec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./run installs it as root)"),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG into rows of pixels (enough for Chromium's screenshots)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


def _shot(html: Path, png: Path, tmp: Path) -> None:
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp / 'profile'}",
            "--window-size=1400,1800",
            f"--screenshot={png}",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.parametrize("case", (*SEED_CASES, "lab-tcp-dropped"))
def test_report_shows_the_highlighted_path(case: str, tmp_path: Path):
    write_report(build_report(load_spec([SAMPLES / case])), tmp_path, ["html"])
    png = tmp_path / "shot.png"
    _shot(tmp_path / case / "report.html", png, tmp_path)
    width, bpp, rows = decode_png(png.read_bytes())
    # The path is drawn in #c0392b (192, 57, 43): count those pixels on the visible first screen.
    red = sum(
        1
        for row in rows
        for x in range(0, width * bpp, bpp)
        if abs(row[x] - 192) < 20 and abs(row[x + 1] - 57) < 20 and abs(row[x + 2] - 43) < 20
    )
    assert red > 2000, f"only {red} path-coloured pixels: is the diagram drawn?"


def _dom(html: Path, tmp: Path) -> str:
    """The DOM Chromium built from the page."""
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom", html.as_uri()]
    return subprocess.run(cmd, check=True, capture_output=True, timeout=120, text=True).stdout


def test_dom_has_summary_and_linked_lines(tmp_path: Path):
    case = "seed-container-to-internet"
    write_report(build_report(load_spec([SAMPLES / case])), tmp_path, ["html"])
    out = _dom(tmp_path / case / "report.html", tmp_path)
    assert "forwarded-out: ens33" in out and "<svg" in out
    assert 'href="#f0-L9"' in out and 'id="f0-L9"' in out  # a hop links to its source line


def _red_pixels(png: Path) -> int:
    width, bpp, rows = decode_png(png.read_bytes())
    return sum(
        1
        for row in rows
        for x in range(0, width * bpp, bpp)
        if abs(row[x] - 192) < 20 and abs(row[x + 1] - 57) < 20 and abs(row[x + 2] - 43) < 20
    )


def test_ids_are_unique_and_diagrams_fit_a_narrow_window(tmp_path: Path):
    import re

    case = "lab-tcp-to-internet"
    write_report(build_report(load_spec([SAMPLES / case])), tmp_path, ["html"])
    dom = _dom(tmp_path / case / "report.html", tmp_path)
    ids = re.findall(r' id="([^"]+)"', dom)
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})[:5]
    # Every diagram scales to its column: with a 700 px window nothing is wider than the page.
    png = tmp_path / "narrow.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=700,3000",
            f"--screenshot={png}",
            (tmp_path / case / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    width, bpp, rows = decode_png(png.read_bytes())
    assert width == 700
    assert _red_pixels(png) > 1000  # the diagrams are there, shrunk to fit, not cut away


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils is not installed")
@pytest.mark.parametrize("case", (*SEED_CASES, "lab-tcp-dropped"))
def test_pdf_pages_render(case: str, tmp_path: Path):
    import pypdf

    write_report(build_report(load_spec([SAMPLES / case])), tmp_path, ["pdf"])
    pdf = tmp_path / case / "report.pdf"
    pages = len(pypdf.PdfReader(str(pdf)).pages)
    assert pages <= 4
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=120)
    pngs = sorted(tmp_path.glob("page-*.png"))
    assert len(pngs) == pages
    # Page 2 holds the first packet group: its path diagram in red beside the verdict.
    assert _red_pixels(pngs[1]) > 300
