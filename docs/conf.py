"""Sphinx configuration: furo, MyST markdown pages, autodoc from docstrings; no network."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

import flask_obo  # noqa: E402

project = "flask-obo"
author = "The flask-obo authors"
copyright = "2026, The flask-obo authors"
release = version = flask_obo.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "obo_docs",  # the configuration, reasons and AADSTS tables, generated from the code
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "_ext"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# README sections are included under a page's own title: their ### subsections then follow an
# H1, which is how they should nest, and MyST would warn about the skipped level.
suppress_warnings = ["myst.header"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"show-inheritance": False}

html_theme = "furo"
html_title = f"flask-obo {release}"
html_static_path: list[str] = []
