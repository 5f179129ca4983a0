"""Render the HTML report to PDF with WeasyPrint, fetching nothing outside the report."""

from __future__ import annotations

import os


def render_pdf(html: str) -> bytes:
    """Return PDF bytes for a self-contained HTML report.

    Every asset is inlined, so the URL fetcher allows only data: URLs. WeasyPrint's default fetcher
    would read local files and http(s) URLs, and an attachment link could embed any file
    (../shared/reference/stack-notes.md, "Security facts").
    """
    os.environ.setdefault("SOURCE_DATE_EPOCH", "0")  # reproducible PDF metadata without harfbuzz-subset
    import weasyprint
    from weasyprint.urls import URLFetcher

    fetcher = URLFetcher(allowed_protocols={"data"})
    doc = weasyprint.HTML(string=html, base_url=None, url_fetcher=fetcher)
    pdf: bytes = doc.write_pdf()
    return pdf
