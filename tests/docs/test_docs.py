"""The documentation's own checks: the API reference names every public
name, and the Sphinx configuration refuses to build it from a package
whose compiled modules are missing (instead of rendering it empty)."""
import os
import re
import subprocess
import sys

import cypoe

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "docs")


def _conf():
    """docs/conf.py's namespace (it imports the compiled package)."""
    path = os.path.join(DOCS, "conf.py")
    ns = {"__file__": path, "__name__": "conf"}
    with open(path, encoding="utf-8") as fh:
        exec(compile(fh.read(), path, "exec"), ns)
    return ns


def _reference():
    with open(os.path.join(DOCS, "reference.rst"), encoding="utf-8") as fh:
        return fh.read()


def test_reference_documents_every_public_name():
    text = _reference()
    listed = re.findall(r"^\.\. auto(?:class|function|data|exception):: cypoe\.(\w+)$", text, re.M)
    assert len(listed) == len(set(listed))
    assert set(listed) <= set(cypoe.__all__), "stale names in reference.rst"
    added = _conf()["reference_additions"](text, cypoe.__all__, cypoe)
    found = set(listed) | set(re.findall(r":: cypoe\.(\w+)$", added, re.M))
    assert found == set(cypoe.__all__)


def test_a_new_public_name_is_added_to_the_reference():
    import types
    ns = types.SimpleNamespace(Thing=type("Thing", (), {"__doc__": "x"}),
                               Oops=type("Oops", (Exception,), {}), helper=len,
                               default=object(), Kernel=cypoe.Kernel)
    added = _conf()["reference_additions"](_reference(), ["Kernel", "Thing", "Oops", "helper",
                                                          "default"], ns)
    assert "Other public names" in added
    assert ".. autoclass:: cypoe.Thing\n   :members:" in added
    assert ".. autoexception:: cypoe.Oops" in added
    assert ".. autofunction:: cypoe.helper" in added
    assert ".. autodata:: cypoe.default" in added
    assert "cypoe.Kernel" not in added            # already in its section
    assert _conf()["reference_additions"](_reference(), ["Kernel"], ns) == ""


def test_new_pages_are_in_the_toctree():
    with open(os.path.join(DOCS, "index.rst"), encoding="utf-8") as fh:
        index = fh.read()
    for page in ("quickstart", "migrating", "reference"):
        assert re.search(rf"^   {page}$", index, re.M), page


def test_no_pointer_to_files_users_cannot_open():
    for name in os.listdir(DOCS):
        if name.endswith(".rst"):
            with open(os.path.join(DOCS, name), encoding="utf-8") as fh:
                text = fh.read()
            for missing in ("API.md", "SEMANTICS.md", "DESIGN.md"):
                assert missing not in text, (name, missing)


BLOCK_COMPILED = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "cypoe._kernel":
            raise ImportError("No module named 'cypoe._kernel' (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
conf = sys.argv[1]
try:
    exec(compile(open(conf).read(), conf, "exec"), {"__file__": conf, "__name__": "conf"})
except RuntimeError as exc:
    print("REFUSED:", exc)
    sys.exit(3)
print("BUILT")
"""


def test_conf_fails_loudly_without_the_compiled_modules():
    conf = os.path.join(DOCS, "conf.py")
    proc = subprocess.run([sys.executable, "-c", BLOCK_COMPILED, conf],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "compiled modules cannot be imported" in proc.stdout
    assert "pip install" in proc.stdout


def test_conf_loads_with_the_compiled_package():
    conf = os.path.join(DOCS, "conf.py")
    proc = subprocess.run([sys.executable, "-c", BLOCK_COMPILED.replace("cypoe._kernel",
                                                                         "no.such.module"), conf],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "BUILT" in proc.stdout, (proc.stdout, proc.stderr)


def test_a_hand_written_keyword_only_star_is_escaped():
    lines = ["Line(*, literal=None,", "max_length=None)", "", "a * b, f(*args), g(a, *)"]
    _conf()["_escape_keyword_only_star"](None, "class", "cypoe.Line", None, {}, lines)
    assert lines == ["Line(\\*, literal=None,", "max_length=None)", "",
                     "a * b, f(*args), g(a, \\*)"]
