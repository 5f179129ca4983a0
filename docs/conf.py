# Sphinx configuration for reportgen's documentation; it embeds sample reports with the
# reportgen.integrations.sphinx directive. Build: sphinx-build -b html docs out/docs
project = "reportgen"
extensions = ["reportgen.integrations.sphinx"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
source_suffix = {".rst": "restructuredtext"}
# The directive reads cases only below this folder (relative to this file): the bundled samples.
reportgen_case_root = ".."
