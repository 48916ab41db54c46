"""Sphinx configuration.

The API reference is autodoc'd from the *built* package: most public classes
are compiled Cython, whose docstrings exist only in the compiled modules.
So the docs import cypoe as it is installed (``pip install ".[docs]"``,
as CI does) or, in a checkout, from ``src/`` when the compiled modules have
been built there (``python setup.py build_ext --inplace``).  When neither
has them the build stops here with an error that says so, instead of
rendering an empty reference.
"""
import glob
import importlib.machinery
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")


def _compiled_in(directory):
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return any(glob.glob(os.path.join(directory, "cypoe", "_kernel" + s)) for s in suffixes)


# A checkout's own build wins over an installed copy (so a worktree documents
# its own code); without one, whatever `import cypoe` finds is documented.
if _compiled_in(SRC) and SRC not in sys.path:
    sys.path.insert(0, SRC)

try:
    import cypoe
    from cypoe import _kernel
except ImportError as exc:
    raise RuntimeError(
        "the docs are built from the compiled package, and cypoe's compiled "
        f"modules cannot be imported ({exc}). Install it first (`pip install "
        "'.[docs]'`) or build it in the checkout (`python setup.py build_ext "
        "--inplace`), then run sphinx-build again.") from exc

if not os.path.basename(getattr(_kernel, "__file__", "") or "").endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES)):
    raise RuntimeError(f"cypoe._kernel is not a compiled module ({_kernel.__file__})")
_undocumented = [name for name in cypoe.__all__
                 if not (getattr(getattr(cypoe, name), "__doc__", None) or "").strip()]
if _undocumented:
    raise RuntimeError("public names without a docstring (the reference would be empty "
                       "for them): " + ", ".join(_undocumented))

project = "cypoe"
author = "The cypoe developers"
copyright = "2026, The cypoe developers"
release = cypoe.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
exclude_patterns = ["_build", "examples"]
html_theme = "alabaster"
nitpicky = False
