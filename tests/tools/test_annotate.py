"""bench/annotate.py, the `cython -a` review of the hot paths: it must find
the functions it is told to review and read Cython's per-line scores right,
or its "white" verdict means nothing."""
import importlib.util
import os
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CYTHON_DIR = os.path.join(ROOT, "cython", "cypoe")

pytest.importorskip("Cython")   # in the test extra; absent only outside it


@pytest.fixture(scope="module")
def annotate():
    spec = importlib.util.spec_from_file_location(
        "cypoe_bench_annotate", os.path.join(ROOT, "bench", "annotate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_config_is_setup_py(annotate):
    cfg = annotate.build_config()
    assert "_kernel" in cfg["modules"] and "_filters" in cfg["modules"]
    assert cfg["directives"]["boundscheck"] is False
    assert cfg["directives"]["language_level"] == 3
    assert cfg["include_path"] == ["cython"]


def test_function_extents(annotate):
    src = textwrap.dedent('''\
        cdef extern from "x.h":
            int c_decl(int a)
        cdef inline int _helper(int a,
                                int b) except -1:
            return a + b

        cdef class Thing(Base):
            cdef int n
            cdef Py_ssize_t put_into(self, tuple records,
                                     object out) except -1:
                cdef Py_ssize_t i = len(records)
                # a comment at column 0 inside:
        # here
                return i

            def get(self, chunks):
                return [c for c in chunks]

        def top():
            pass
        ''').splitlines()
    found = {q: (a, b) for q, a, b in annotate.functions(src)}
    assert found == {"_helper": (3, 5), "Thing.put_into": (9, 14),
                     "Thing.get": (16, 17), "top": (19, 20)}


def test_every_hot_function_exists(annotate):
    """A renamed hot function would silently drop out of the review."""
    names = set()
    for dirpath, _, files in os.walk(CYTHON_DIR):
        for n in files:
            if n.endswith((".pyx", ".pxi")):
                with open(os.path.join(dirpath, n), encoding="utf-8") as f:
                    names.update(q for q, _, _ in annotate.functions(f.read().splitlines()))
    missing = [q for _, q, _ in annotate.HOT if q not in names]
    assert missing == [], f"update HOT in bench/annotate.py: {missing}"


def test_scores_and_kinds_of_a_compiled_module(annotate, tmp_path):
    """A module with an included .pxi: a typed C loop is white, a Python call
    is 'python', a raise is 'error', and the included file is reviewed."""
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    (src_dir / "inc.pxi").write_text(textwrap.dedent('''\
        cdef object included_lookup(object o):
            return o.attribute
        '''))
    (src_dir / "mod.pyx").write_text(textwrap.dedent('''\
        include "inc.pxi"

        cdef long white_loop(const char* p, long n) noexcept:
            cdef long i, total = 0
            for i in range(n):
                total += p[i]
            return total

        cdef int yellow(object o) except -1:
            if o is None:
                raise ValueError("no object")
            o.method()
            return 0
        '''))
    out = tmp_path / "out" / "mod"
    out.mkdir(parents=True)
    rc = annotate._compile_one(str(src_dir / "mod.pyx"), str(out), [str(src_dir)],
                               '{"language_level": 3}')
    assert rc == 0
    assert sorted(os.listdir(out)) == ["inc.html", "mod.c", "mod.html"]
    cfg = {"cython_dir": str(src_dir)}
    pages = annotate.load_pages(str(tmp_path / "out"), cfg)
    assert {os.path.basename(p[1]) for p in pages} == {"mod.pyx", "inc.pxi"}
    hot = [("mod", "white_loop", ""), ("mod", "yellow", ""), ("mod", "included_lookup", "")]
    entries = {e["function"]: e for e in annotate.review(pages, hot=hot)}
    assert not any(e["missing"] for e in entries.values())
    assert entries["white_loop"]["yellow"] == []
    kinds = {y["line"]: y["kind"] for y in entries["yellow"]["yellow"]}
    assert kinds[11] == "error"                      # raise ValueError
    assert kinds[12] == "python"                     # o.method()
    inc = entries["included_lookup"]
    assert inc["file"].endswith("inc.pxi")
    # line 1 carries the traceback entry of the error path
    assert [(y["line"], y["kind"]) for y in inc["yellow"]] == [(1, "error"), (2, "python")]
    assert "__Pyx_PyObject_GetAttrStr" in inc["yellow"][1]["calls"]
