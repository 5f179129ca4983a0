"""Render the report as a PDF to attach: the print form of the HTML report, made by WeasyPrint.

The print form opens with a title block (case, host, capture window, reportgen version and, only
when SOURCE_DATE_EPOCH is set, the generation date), tells folded packet groups once, and shows only
the snapshot lines the explanation cites unless the appendix is asked for.
"""

from __future__ import annotations

import os

from reportgen.model import Report
from reportgen.render.digest import Digest, digest_of
from reportgen.render.options import RenderOptions


def render_pdf(case: Report | Digest, svgs: dict[str, str], options: RenderOptions | None = None) -> bytes:
    """Return the PDF bytes of a report."""
    return html_to_pdf(print_html(case, svgs, options))


def print_html(case: Report | Digest, svgs: dict[str, str], options: RenderOptions | None = None) -> str:
    """Return the print form of the HTML report, which WeasyPrint lays out as the PDF."""
    from reportgen.render.html import packet_svgs, render_html

    digest = case if isinstance(case, Digest) else digest_of(case)
    opts = options or RenderOptions()
    # On paper each packet's diagram shows only its own path: a narrow column that stands beside the
    # verdict at full size, where the screen's diagram with the neighbouring hooks would shrink.
    narrow = packet_svgs(digest, neighbours=False)
    return render_html(digest, {"topology": svgs["topology"], **narrow}, for_print=True, appendix=opts.appendix)


def html_to_pdf(html: str) -> bytes:
    """Return PDF bytes for a self-contained HTML document.

    Every asset is inlined, so the URL fetcher allows only data: URLs. WeasyPrint's default fetcher
    would read local files and http(s) URLs, and an attachment link could embed any file
    (../shared/reference/stack-notes.md, "Security facts").
    """
    import weasyprint
    from weasyprint.urls import URLFetcher

    # WeasyPrint stamps the PDF's creation date from SOURCE_DATE_EPOCH when set, else from the clock:
    # pin it for the call only (to 0 when unset) so the same input gives the same bytes, and leave
    # the environment as it was for the title block of the next report.
    saved = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = saved if saved is not None else "0"
    try:
        fetcher = URLFetcher(allowed_protocols={"data"})
        pdf: bytes = weasyprint.HTML(string=html, base_url=None, url_fetcher=fetcher).write_pdf()
    finally:
        if saved is None:
            del os.environ["SOURCE_DATE_EPOCH"]
    return pdf
