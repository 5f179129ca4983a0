"""Data files shipped with reportgen (prefix_conventions.yaml: well-known LOG prefix conventions)."""
