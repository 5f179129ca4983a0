"""reportgen: explain Linux netfilter packet traces hop by hop."""

__version__ = "0.1.0"
JSON_SCHEMA_VERSION = 5
