#!/usr/bin/env python
"""``cython -a`` review of cypoe's hot paths.

Runs ``cython -a`` on the compiled modules (into a temporary directory, with
the modules, compiler directives and include path that ``setup.py``
declares), reads the per-line scores from the annotated HTML, and prints,
for a declared list of hot functions (``HOT`` below), every line that is not
white: its score, its source, and the C-API calls that made it yellow.

Code that a ``.pyx`` pulls in with ``include "x.pxi"`` is reviewed too (Cython
writes one HTML page per included file); each module is annotated into its own
directory, so a file included by two modules is reviewed in each.

Each yellow line is put in one kind, from the C-API calls on it:

``python``
    at least one call into the Python C-API other than the two kinds below
    (attribute lookups, generic calls, boxing, dict/list operations...):
    this is what "make the hot loop white" is about.
``access``
    besides the kinds below, only inlined accessors of a known type
    (``PyTuple_GET_ITEM``, ``__Pyx_PyList_GET_SIZE``, ``PyBytes_AS_STRING``,
    exact type checks): C struct reads that Cython still scores 1 or 2.
``refcount``
    only reference counting (``__Pyx_INCREF``/``DECREF``, ``Py_CLEAR``...);
    Cython scores them 1 each, they cost a few instructions.
``error``
    a ``raise`` or ``except`` line, or only error-path calls (``__Pyx_AddTraceback``, raising, exception
    save/restore), which run when an exception is raised or propagates; a
    ``cdef`` function's ``def`` line carries its traceback entry and scores 2.

Usage (from the repository root, venv active)::

    python bench/annotate.py                    # every hot function
    python bench/annotate.py --module _kernel   # only that module's
    python bench/annotate.py --function Line.   # qualname prefix/substring
    python bench/annotate.py --kind python      # only real Python work
    python bench/annotate.py --kind python --kind access   # all but refcount/error
    python bench/annotate.py --json out.json    # machine-readable as well
    python bench/annotate.py --all-functions --module _filters
    python bench/annotate.py --html-dir /tmp/ann --reuse   # keep/reuse HTML
    cd /work/wt-other && python /work/wt-perf/bench/annotate.py   # review that tree

Exit status 0; 2 when a module does not compile.
"""
import argparse
import ast
import concurrent.futures
import html
import json
import os
import re
import subprocess
import sys
import tempfile

# The tree reviewed: --root, else the current directory when it is a cypoe
# tree (so a worktree is reviewed by running another's copy of this script
# from it), else the tree this script is in.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _is_tree(path):
    return os.path.isfile(os.path.join(path, "setup.py")) and \
        os.path.isdir(os.path.join(path, "cython", "cypoe"))

# The hot functions: (module where it lives today, qualified name, what it is).
# The module is a hint: a function that moved to another module is still
# found by its qualified name (and the report says where).  A name that is
# found nowhere is reported as missing: update the list when you rename.
HOT = [
    # kernel: dispatch, run-once, timers
    ("_kernel", "Kernel._run_once", "run-once"),
    ("_kernel", "Kernel._iteration", "run-once: poll, fd dispatch, timers, events"),
    ("_kernel", "Kernel._deliver_events", "event dispatch"),
    ("_kernel", "Kernel._flush_dirty", "flush dispatch"),
    ("_kernel", "Kernel.mark_dirty", "flush dispatch"),
    ("_kernel", "Kernel.set_interest", "fd interest"),
    ("_kernel", "Kernel.schedule", "timers"),
    ("_kernel", "Kernel.cancel_timer", "timers"),
    ("_kernel", "Kernel.call_soon", "event queue"),
    ("_kernel", "Kernel.enqueue_event", "event queue"),
    ("_kernel", "Timer._fire", "timers"),
    ("_kernel", "_timer_queue_push", "timers"),
    ("_kernel", "_timer_queue_pop", "timers"),
    ("_kernel", "Session._dispatch", "event dispatch"),
    # buffer
    ("_buffer", "ByteBuffer.reserve", "buffer"),
    ("_buffer", "ByteBuffer.append", "buffer"),
    ("_buffer", "ByteBuffer.append_object", "buffer"),
    ("_buffer", "ByteBuffer.consume", "buffer"),
    ("_buffer", "ByteBuffer.clear", "buffer"),
    ("_buffer", "ByteBuffer.shrink", "buffer"),
    # filters: feed (compiled input), put (compiled output), get (Python face)
    ("_filters", "Line.feed", "filter feed"),
    ("_filters", "Line._parse", "filter feed"),
    ("_filters", "Line._seek", "filter feed"),
    ("_filters", "Line._keep", "filter feed"),
    ("_filters", "Line._absorb", "filter feed"),
    ("_filters", "Line._emit", "filter feed"),
    ("_filters", "Line._parse_buf", "filter get"),
    ("_filters", "Line.put_into", "filter put"),
    ("_filters", "Line.put_one", "filter put"),
    ("_filters", "_Framing.get", "filter get"),
    ("_filters", "_Framing.get_one", "filter get"),
    ("_filters", "Block.feed", "filter feed"),
    ("_filters", "Block._parse", "filter feed"),
    ("_filters", "Block._parse_buf", "filter get"),
    ("_filters", "Block._header", "filter put"),
    ("_filters", "Block._write_frame", "filter put"),
    ("_filters", "Block.put_into", "filter put"),
    ("_filters", "Block.put_one", "filter put"),
    ("_filters", "Stream.feed", "filter feed"),
    ("_filters", "Stream.put_into", "filter put"),
    ("_filters", "Stream.put_one", "filter put"),
    ("_filters", "Stream.get", "filter get"),
    # ReadWrite: read loop, batch delivery, put and flush
    ("_readwrite", "ReadWrite.on_readable", "read loop"),
    ("_readwrite", "PlainDriver.on_readable", "read loop"),
    ("_readwrite", "ReadWrite._feed", "read loop"),
    ("_readwrite", "ReadWrite._feed_c", "batch delivery"),
    ("_readwrite", "ReadWrite._dispatch_input", "batch delivery"),
    ("_readwrite", "ReadWrite.c_put", "put"),
    ("_readwrite", "ReadWrite._after_put", "put"),
    ("_readwrite", "ReadWrite.put", "put"),
    ("_readwrite", "_rw_put1", "put (fast C entry)"),
    ("_readwrite", "_rw_putn", "put (fast C entry)"),
    ("_readwrite", "ReadWrite.c_flush", "flush"),
    ("_readwrite", "ReadWrite.on_flush", "flush"),
    ("_readwrite", "ReadWrite.on_writable", "flush"),
    ("_readwrite", "PlainDriver.send", "flush"),
    ("_readwrite", "send_buffer", "flush"),
    ("_readwrite", "ReadWrite._write_now", "flush"),
    ("_readwrite", "ReadWrite._after_write", "flush"),
    ("_readwrite", "ReadWrite._update_interest", "flush"),
    # connect path
    ("_sockets", "nb_connect", "connect"),
    ("_sockets", "_fill_sockaddr", "connect"),
    ("_readwrite", "ReadWrite._finish_connect", "connect"),
    ("_socketfactory", "SocketFactory.on_readable", "accept"),
    ("_socketfactory", "SocketFactory._start_connect", "connect"),
    ("_components", "ComponentCore.attach", "connect"),
    ("_components", "ComponentCore.arm", "connect"),
    ("_components", "MultiCore.connect", "connect"),
    ("_components", "MultiCore._new_conn", "connect"),
    ("_components", "ComponentCore.open_connection", "connect"),
    ("_components", "ServerCore.accepted", "accept"),
    ("_scan", "ConnectScan.on_readable", "scan: completions"),
    ("_scan", "ConnectScan._pump", "scan: connect"),
    ("_scan", "ConnectScan._launch", "scan: connect"),
    ("_scan", "ConnectScan._complete", "scan: completions"),
    ("_scan", "ConnectScan._connected", "scan: completions"),
    ("_scan", "ConnectScan._failed", "scan: completions"),
    ("_scan", "ConnectScan._expire", "scan: timeouts"),
    ("_scan", "ConnectScan._report", "scan: per port"),
    ("_scan", "ScanOrder.next", "scan: per port"),
    # components: input hooks
    ("_components", "ComponentConnection._feed", "input hook"),
    ("_components", "ComponentConnection._call_user", "input hook"),
    ("_components", "invoke", "input hook"),
    ("_components", "Connection._on_input", "input hook"),
    ("_components", "Conn._on_input", "input hook"),
    ("_components", "ClientConnection._on_input", "input hook"),
    ("_components", "Connection._on_flushed", "flush hook"),
    # load engine: per-response path
    ("_load", "LoadConn.on_readable", "load: per response"),
    ("_load", "LoadConn._input", "load: per response"),
    ("_load", "LoadConn._complete", "load: per response"),
    ("_load", "LoadConn._queue", "load: per request"),
    ("_load", "LoadConn._refill", "load: per request"),
    ("_load", "LoadConn._send", "load: per request"),
    ("_load", "LoadConn.on_writable", "load: per request"),
    ("_load", "Hist.record", "load: per response"),
    ("_framing", "_Framer._parse", "load: per response"),
    ("_framing", "_Framer._feed_limit", "load: per response"),
]

REFCOUNT_CALLS = frozenset({
    "__Pyx_INCREF", "__Pyx_DECREF", "__Pyx_XINCREF", "__Pyx_XDECREF",
    "__Pyx_DECREF_SET", "__Pyx_XDECREF_SET", "__Pyx_CLEAR", "__Pyx_XCLEAR",
    "__Pyx_NewRef", "__Pyx_XNewRef",
    "Py_INCREF", "Py_DECREF", "Py_XINCREF", "Py_XDECREF", "Py_CLEAR",
    "Py_NewRef", "Py_XNewRef", "Py_SETREF", "Py_XSETREF",
})
ERROR_CALLS = frozenset({
    "__Pyx_AddTraceback", "__Pyx_WriteUnraisable", "__Pyx_ErrFetch",
    "__Pyx_ErrRestore", "__Pyx_ErrFetchWithState", "__Pyx_ErrRestoreWithState",
    "__Pyx_ExceptionSave", "__Pyx_ExceptionReset", "__Pyx_ExceptionSwap",
    "__Pyx_GetException", "__Pyx_PyErr_ExceptionMatches",
    "__Pyx_PyErr_GivenExceptionMatches", "__Pyx_ErrFetchInState",
    "__Pyx_ErrRestoreInState", "__Pyx_Raise", "PyErr_SetString", "PyErr_Format",
    "PyErr_NoMemory", "PyErr_SetFromErrno", "PyErr_Occurred",
    "__Pyx_RaiseArgtupleInvalid", "__Pyx_RaiseUnexpectedTypeError",
    "__Pyx_RaiseNoneNotIterableError", "__Pyx_RaiseTooManyValuesError",
    "__Pyx_RaiseNeedMoreValuesError", "__Pyx_RaiseUnboundLocalError",
    "__Pyx_RaiseClosureNameError", "__Pyx_RaiseUnboundMemoryviewSliceNogil",
})
# Inlined reads of a known type's struct (and exact type checks).
_ACCESS_RE = re.compile(
    r"^(?:__Pyx_)?Py(?:Tuple|List|Bytes|ByteArray|Unicode|Dict|Set|Float|Long|Bool)"
    r"_(?:GET_SIZE|GET_ITEM|SET_ITEM|GET_LENGTH|AS_STRING|AS_DOUBLE|CheckExact|Check)$"
    r"|^__Pyx_(?:TypeCheck|PyUnicode_GET_LENGTH|PyList_GET_ITEM_REF)$")

_DEFAULT_DIRECTIVES = {"language_level": 3, "boundscheck": False, "wraparound": False,
                       "cdivision": True, "initializedcheck": False,
                       "embedsignature": True}


# --------------------------------------------------------------------------
# build configuration, read from setup.py (so it cannot drift)

def build_config(setup_py=None):
    """Modules, source directory, include path and directives of setup.py.

    Read with ``ast`` (setup.py runs ``setup()`` when imported): the literal
    ``MODULES`` list, ``CYTHON_DIR``, and the ``include_path`` and
    ``compiler_directives`` keywords of its ``cythonize`` call.
    """
    setup_py = setup_py or os.path.join(ROOT, "setup.py")
    with open(setup_py, encoding="utf-8") as f:
        tree = ast.parse(f.read(), setup_py)
    cfg = {"modules": None, "cython_dir": os.path.join("cython", "cypoe"),
           "include_path": ["cython"], "directives": dict(_DEFAULT_DIRECTIVES)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "MODULES":
                cfg["modules"] = ast.literal_eval(node.value)
            elif name == "CYTHON_DIR" and isinstance(node.value, ast.Call):
                try:
                    cfg["cython_dir"] = os.path.join(*[ast.literal_eval(a) for a in node.value.args])
                except ValueError:
                    pass
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "cythonize":
            for kw in node.keywords:
                try:
                    value = ast.literal_eval(kw.value)
                except ValueError:
                    continue
                if kw.arg == "include_path":
                    cfg["include_path"] = list(value)
                elif kw.arg == "compiler_directives":
                    cfg["directives"] = dict(value)
    if cfg["modules"] is None:
        src = os.path.join(ROOT, cfg["cython_dir"])
        cfg["modules"] = sorted(n[:-4] for n in os.listdir(src) if n.endswith(".pyx"))
    return cfg


# --------------------------------------------------------------------------
# compile step (runs in a child process: it patches Cython's annotator)

def _compile_one(src, outdir, include_path, directives_json):
    """cython -a SRC into OUTDIR (Cython also annotates the files it includes)."""
    from Cython.Compiler.Main import CompilationOptions, compile as cy_compile

    directives = json.loads(directives_json)
    language_level = directives.pop("language_level", 3)
    name = os.path.splitext(os.path.basename(src))[0]
    options = CompilationOptions(
        annotate=True, include_path=include_path, compiler_directives=directives,
        language_level=language_level,
        output_file=os.path.join(outdir, name + ".c"))
    result = cy_compile(os.path.abspath(src), options)
    return 0 if not getattr(result, "num_errors", 0) else 2


def annotate_modules(modules, outdir, cfg, jobs=1, reuse=False):
    """Write <module>/<module>.html (and <module>/<x>.html per include)."""
    cython_dir = os.path.join(ROOT, cfg["cython_dir"])
    include = [os.path.join(ROOT, p) for p in cfg["include_path"]] + [cython_dir]

    def one(module):
        src = os.path.join(cython_dir, module + ".pyx")
        page = os.path.join(outdir, module, module + ".html")
        if reuse and os.path.exists(page) and os.path.getmtime(page) >= _newest_source(cython_dir):
            return module, 0, ""
        target = os.path.join(outdir, module)
        os.makedirs(target, exist_ok=True)
        cmd = [sys.executable, os.path.abspath(__file__), "--compile-one", src, target,
               json.dumps(include), json.dumps(cfg["directives"])]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        return module, proc.returncode, proc.stderr

    failed = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for module, rc, err in pool.map(one, modules):
            if rc != 0:
                failed.append((module, err))
    return failed


def _newest_source(cython_dir):
    newest = 0.0
    for dirpath, _, names in os.walk(cython_dir):
        for n in names:
            if n.endswith((".pyx", ".pxd", ".pxi", ".h")):
                newest = max(newest, os.path.getmtime(os.path.join(dirpath, n)))
    return newest


# --------------------------------------------------------------------------
# HTML parsing

_LINE_RE = re.compile(
    r'<pre class="cython line score-(\d+)"[^>]*>.*?<span class="[^"]*">(\d+)</span>: (.*?)</pre>\n?'
    r"(?:<pre class='cython code score-\d+[^']*'>(.*?)</pre>)?",
    re.S)
_CALL_RE = re.compile(r"<span class='(py_c_api|pyx_c_api|py_macro_api|pyx_macro_api)'>([A-Za-z_0-9]+)</span>")
_TAG_RE = re.compile(r"<[^>]+>")
_TITLE_RE = re.compile(r"<title>Cython: ([^<]*)</title>")


def parse_annotation(page):
    """{line number: (score, source text, [C-API call names])} of one HTML page."""
    lines = {}
    for m in _LINE_RE.finditer(page):
        score, number = int(m.group(1)), int(m.group(2))
        text = html.unescape(_TAG_RE.sub("", m.group(3)))
        calls = [c for _, c in _CALL_RE.findall(m.group(4) or "")]
        lines[number] = (score, text, calls)
    return lines


_ERROR_LINE_RE = re.compile(r"^\s*(?:raise\b|except\b.*:\s*(?:#.*)?$)")


def classify(calls, source=""):
    """'python', 'access', 'error' or 'refcount' for a yellow line's calls.

    A ``raise`` statement or an ``except`` clause is an error-path line
    whatever it calls: it runs only when something failed.
    """
    if _ERROR_LINE_RE.match(source):
        return "error"
    names = set(calls)
    if not names:
        return "python"
    access = {n for n in names if _ACCESS_RE.match(n)}
    rest = names - access - ERROR_CALLS - REFCOUNT_CALLS
    if rest:
        return "python"
    if access:
        return "access"
    if names - REFCOUNT_CALLS:
        return "error"
    return "refcount"


# --------------------------------------------------------------------------
# function extents in a Cython source

_CLASS_RE = re.compile(r"^(\s*)(?:cdef\s+(?:(?:public|final|readonly)\s+)*)?class\s+(\w+)")
_DEF_RE = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)\s*\(")
_CDEF_RE = re.compile(
    r"^(\s*)c(?:p)?def\s+(?!class\b|extern\b|struct\b|enum\b|union\b|packed\b|fused\b)"
    r"(?:(?:inline|static|public|api|readonly|const|unsigned|signed|long|short)\s+)*"
    r"(?:[\w.\[\], ]+?[\s*]+)?(\w+)\s*\(")


def _indent(s):
    return len(s) - len(s.lstrip(" \t"))


def functions(source_lines):
    """[(qualname, first line, last line)] (1-based, inclusive) of a source."""
    found = []
    stack = []   # (indent, name, kind)
    n = len(source_lines)
    i = 0
    while i < n:
        line = source_lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        ind = _indent(line)
        while stack and stack[-1][0] >= ind:
            stack.pop()
        mc = _CLASS_RE.match(line)
        md = _DEF_RE.match(line) or (None if mc else _CDEF_RE.match(line))
        if mc and stripped.rstrip().endswith(":"):
            stack.append((ind, mc.group(2), "class"))
            i += 1
            continue
        if md:
            # the header may span lines: find where its parentheses close
            j, depth = i, 0
            header = ""
            while j < n:
                code = source_lines[j].split("#", 1)[0]
                header += code
                depth += code.count("(") + code.count("[") - code.count(")") - code.count("]")
                if depth <= 0:
                    break
                j += 1
            if not header.rstrip().endswith(":"):
                i = j + 1            # a declaration (extern block, forward)
                continue
            end = j
            k = j + 1
            while k < n:
                s = source_lines[k]
                if s.strip() and not s.strip().startswith("#") and _indent(s) <= ind:
                    break
                if s.strip() and not s.strip().startswith("#"):
                    end = k
                k += 1
            qual = ".".join([name for _, name, _ in stack] + [md.group(2)])
            found.append((qual, i + 1, end + 1))
            stack.append((ind, md.group(2), "def"))
            i = j + 1
            continue
        i += 1
    return found


# --------------------------------------------------------------------------
# the review

def load_pages(outdir, cfg):
    """[(module, source path, {line: (score, text, calls)})] from outdir."""
    cython_dir = os.path.join(ROOT, cfg["cython_dir"])
    pages = []
    for module in sorted(os.listdir(outdir)):
        mdir = os.path.join(outdir, module)
        if not os.path.isdir(mdir):
            continue
        # an included file in a subdirectory gets its page in one too
        htmls = sorted(os.path.join(d, n) for d, _, names in os.walk(mdir)
                       for n in names if n.endswith(".html"))
        for path in htmls:
            name = os.path.basename(path)
            with open(path, encoding="utf-8") as f:
                page = f.read()
            title = _TITLE_RE.search(page)
            source = _find_source(cython_dir, title.group(1) if title else name[:-5] + ".pyx")
            if source is None:
                continue
            pages.append((module, source, parse_annotation(page)))
    return pages


def _find_source(cython_dir, basename):
    for dirpath, _, names in os.walk(cython_dir):
        if basename in names:
            return os.path.join(dirpath, basename)
    return None


def review(pages, hot=HOT, all_functions=False, module=None, function=None,
           kinds=("python", "access", "error", "refcount"), min_score=1):
    """The report: one entry per function, with its yellow lines."""
    index = {}
    for mod, source, lines in pages:
        with open(source, encoding="utf-8") as f:
            src_lines = f.read().splitlines()
        for qual, first, last in functions(src_lines):
            index.setdefault(qual, []).append((mod, source, first, last, lines, src_lines))
    wanted = []
    if all_functions:
        for qual, places in sorted(index.items()):
            for place in places:
                wanted.append((place[0], qual, ""))
    else:
        wanted = list(hot)
    entries = []
    seen = set()
    for hint, qual, role in wanted:
        places = index.get(qual, [])
        if module is not None:
            places = [p for p in places if p[0] == module]
            if not places and hint != module:
                continue
        if function is not None and function not in qual:
            continue
        if not places:
            entries.append({"module": hint, "function": qual, "role": role, "missing": True})
            continue
        for mod, source, first, last, lines, src_lines in places:
            if all_functions and mod != hint:
                continue
            key = (source, qual, first)
            if key in seen:
                continue
            seen.add(key)
            yellow = []
            total = 0
            for number in range(first, last + 1):
                score, text, calls = lines.get(number, (0, src_lines[number - 1], []))
                if score <= 0:
                    continue
                total += score
                kind = classify(calls, src_lines[number - 1])
                if score < min_score or kind not in kinds:
                    continue
                counts = {}
                for c in calls:
                    counts[c] = counts.get(c, 0) + 1
                yellow.append({"line": number, "score": score, "kind": kind,
                               "source": src_lines[number - 1].rstrip(),
                               "calls": counts})
            entries.append({
                "module": mod, "function": qual, "role": role,
                "file": os.path.relpath(source, ROOT), "first": first, "last": last,
                "moved_from": hint if (hint and hint != mod and not all_functions) else None,
                "total_score": total, "yellow": yellow, "missing": False})
    return entries


def print_report(entries, out=sys.stdout):
    missing = [e for e in entries if e["missing"]]
    white = 0
    for e in entries:
        if e["missing"]:
            continue
        if not e["yellow"]:
            white += 1
            continue
        moved = f" (moved from {e['moved_from']})" if e["moved_from"] else ""
        role = f"  [{e['role']}]" if e["role"] else ""
        out.write(f"\n{e['file']}:{e['first']}  {e['function']}{moved}{role}  "
                  f"total score {e['total_score']}\n")
        for y in e["yellow"]:
            calls = ", ".join(f"{c}x{n}" if n > 1 else c for c, n in sorted(y["calls"].items()))
            out.write(f"  {y['line']:5d} {y['score']:3d} {y['kind']:<8} {y['source'].strip()}\n")
            if calls:
                out.write(f"  {'':5} {'':3} {'':8}   -> {calls}\n")
    shown = len(entries) - len(missing)
    out.write(f"\n{shown} function(s) reviewed, {white} without a line of the kinds shown")
    if missing:
        out.write(f"; {len(missing)} not found: "
                  + ", ".join(f"{e['module']}:{e['function']}" for e in missing))
    out.write("\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--compile-one":
        src, outdir, include, directives = argv[1:5]
        return _compile_one(src, outdir, json.loads(include), directives)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--module", help="only this module's functions (e.g. _kernel)")
    p.add_argument("--function", help="only functions whose qualname contains this")
    p.add_argument("--all-functions", action="store_true",
                   help="every function of the annotated modules, not only the hot list")
    p.add_argument("--kind", action="append", choices=["python", "access", "error", "refcount"],
                   help="show only yellow lines of this kind (repeatable; default: all)")
    p.add_argument("--min-score", type=int, default=1, help="hide lines scoring less")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON ('-': stdout only)")
    p.add_argument("--html-dir", metavar="DIR", help="write (and keep) the HTML here")
    p.add_argument("--reuse", action="store_true",
                   help="with --html-dir: skip modules whose HTML is newer than every source")
    p.add_argument("-j", "--jobs", type=int, default=1, help="parallel cython runs")
    p.add_argument("--root", help="the cypoe tree to review (default: the current "
                                  "directory if it is one, else this script's tree)")
    args = p.parse_args(argv)
    global ROOT
    if args.root:
        ROOT = os.path.abspath(args.root)
    elif _is_tree(os.getcwd()):
        ROOT = os.getcwd()
    if not _is_tree(ROOT):
        p.error(f"{ROOT} is not a cypoe tree (setup.py, cython/cypoe)")

    cfg = build_config()
    modules = cfg["modules"]
    if args.module and not args.all_functions:
        # a hot function may have moved: annotate the hinted module, or all
        modules = [m for m in modules if m == args.module] or modules
    elif args.module:
        modules = [m for m in modules if m == args.module]
    tmp = None
    if args.html_dir:
        outdir = args.html_dir
        os.makedirs(outdir, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="cypoe-annotate-")
        outdir = tmp.name
    try:
        failed = annotate_modules(modules, outdir, cfg, jobs=args.jobs,
                                  reuse=bool(args.html_dir and args.reuse))
        for module, err in failed:
            sys.stderr.write(f"cython -a {module} failed:\n{err}\n")
        pages = [pg for pg in load_pages(outdir, cfg) if pg[0] in modules]
        entries = review(pages, all_functions=args.all_functions, module=args.module,
                         function=args.function,
                         kinds=tuple(args.kind or ("python", "access", "error", "refcount")),
                         min_score=args.min_score)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.json == "-":
        json.dump(entries, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(f"cython -a review of {ROOT}\n")
        print_report(entries)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(entries, f, indent=1)
    return 2 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:      # | head
        sys.stderr.close()
        sys.exit(0)
