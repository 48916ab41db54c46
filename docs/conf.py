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
import inspect
import os
import re
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


def reference_additions(text, names, namespace):
    """The autodoc directives for the public names that `text` (the
    reference page's source) does not document yet, under their own
    heading: a name added to ``cypoe.__all__`` is in the reference at once,
    even before someone files it under its section."""
    documented = set(re.findall(
        r"^\.\. auto(?:class|function|data|exception):: cypoe\.(\w+)\s*$", text, re.M))
    missing = [n for n in names if n not in documented]
    if not missing:
        return ""
    out = ["", "Other public names", "------------------", ""]
    for name in missing:
        obj = getattr(namespace, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            out += [f".. autoexception:: cypoe.{name}", ""]
        elif isinstance(obj, type):
            out += [f".. autoclass:: cypoe.{name}", "   :members:", ""]
        elif inspect.isroutine(obj):
            out += [f".. autofunction:: cypoe.{name}", ""]
        else:
            out += [f".. autodata:: cypoe.{name}", ""]
    return "\n".join(out)


def _complete_reference(app, docname, source):
    if docname == "reference":
        source[0] += reference_additions(source[0], cypoe.__all__, cypoe)


_KEYWORD_ONLY_STAR = re.compile(r"(?<=[(,\s])\*(?=\s*[,)])")


def _escape_keyword_only_star(app, what, name, obj, options, lines):
    """Some docstrings restate a signature by hand (``Name(*, a=1, …)``);
    reST reads that lone ``*`` as the start of an emphasis and warns. It is
    escaped, so the text shows as written."""
    for i, line in enumerate(lines):
        lines[i] = _KEYWORD_ONLY_STAR.sub(r"\\*", line)


def setup(app):
    app.connect("source-read", _complete_reference)
    app.connect("autodoc-process-docstring", _escape_keyword_only_star)


project = "cypoe"
author = "The cypoe developers"
copyright = "2026, The cypoe developers"
release = cypoe.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
exclude_patterns = ["_build", "examples"]
html_theme = "alabaster"
nitpicky = False
