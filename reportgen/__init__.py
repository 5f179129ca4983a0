"""reportgen: explain Linux netfilter packet traces hop by hop."""

__version__ = "0.1.0"
JSON_SCHEMA_VERSION = 6

# Refuse compiled modules older than their sources (an edit after the build), before any is imported.
from reportgen.compiled import check as _check_compiled  # noqa: E402

_check_compiled()
