import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))

project = "cypoe"
author = "The cypoe developers"
copyright = "2026, The cypoe developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
exclude_patterns = ["_build", "examples"]
html_theme = "alabaster"
nitpicky = False
