"""The typed API: py.typed and the .pyi stubs ship, match the compiled
modules (mypy's stubtest), and ``mypy --strict`` passes on docs/examples and
on tests/typing/check_api.py, a program that uses every public name."""
import glob
import importlib.util
import os
import subprocess
import sys

import pytest

import cypoe

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PKG = os.path.dirname(os.path.abspath(cypoe.__file__))
# The directory holding the cypoe that is imported: mypy reads the same one.
PKG_ROOT = os.path.dirname(PKG)
CHECK_API = os.path.join(HERE, "check_api.py")
ALLOWLIST = os.path.join(HERE, "stubtest-allowlist.txt")

# The compiled modules that cypoe's public names come from: each has a stub.
STUBBED = ["_kernel", "_io", "_filters", "_components"]
# The modules whose stubs / annotations stubtest compares with the runtime.
STUBTEST_MODULES = ["cypoe." + m for m in STUBBED] + [
    "cypoe.server", "cypoe.client", "cypoe.tcpmulti", "cypoe.filters", "cypoe.errors",
    "cypoe.aio"]

needs_mypy = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (pip install -e '.[test]' installs it)")


def _env():
    env = dict(os.environ)
    env["MYPYPATH"] = PKG_ROOT
    env["PYTHONPATH"] = PKG_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(args, tmp_path, timeout=600):
    """``python -m args...``; mypy's cache goes to tmp_path (stubtest keeps
    none), never into the checkout."""
    cache = ["--cache-dir", str(tmp_path)] if args[0] == "mypy" else []
    return subprocess.run([sys.executable, "-m"] + args + cache, cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_every_public_name_exists_at_runtime():
    missing = [n for n in cypoe.__all__ if not hasattr(cypoe, n)]
    assert missing == []


def test_stubs_and_marker_sit_next_to_the_modules():
    assert os.path.isfile(os.path.join(PKG, "py.typed"))
    for mod in STUBBED:
        assert os.path.isfile(os.path.join(PKG, mod + ".pyi")), mod
        assert importlib.util.find_spec("cypoe." + mod).origin.endswith(
            (".so", ".pyd")), mod


def test_stubs_ship_in_the_distribution():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        pyproject = f.read()
    assert '"py.typed"' in pyproject and '"*.pyi"' in pyproject
    with open(os.path.join(ROOT, "MANIFEST.in")) as f:
        manifest = f.read()
    assert "*.pyi" in manifest and "py.typed" in manifest


def test_check_api_program_runs():
    """The typed program is also a correct one: its calls work at run time."""
    proc = subprocess.run([sys.executable, CHECK_API], env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check_api: OK" in proc.stdout


@needs_mypy
def test_mypy_strict_passes_on_examples_and_api_program(tmp_path):
    examples = sorted(glob.glob(os.path.join(ROOT, "docs", "examples", "*.py")))
    assert examples
    # cypoe.aio is annotated throughout: checked strictly as well.
    proc = _run(["mypy", "--strict", "--follow-imports=silent", "--no-error-summary",
                 os.path.join(PKG, "aio.py"), CHECK_API] + examples, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_mypy
def test_mypy_strict_catches_a_wrong_call(tmp_path):
    """The stubs are really used: a wrong type is an error, not Any."""
    bad = tmp_path / "bad.py"
    bad.write_text("import cypoe\n"
                   "cypoe.kernel.delay('soon', print)\n"
                   "conn: cypoe.Conn = cypoe.Line()\n")
    proc = _run(["mypy", "--strict", "--follow-imports=silent", str(bad)],
                tmp_path / "cache")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert '"delay" of "Kernel"' in proc.stdout
    assert 'variable has type "Conn"' in proc.stdout


@needs_mypy
def test_stubs_match_the_runtime(tmp_path):
    """mypy's stubtest: every name in a stub exists at run time with a
    compatible signature, and every public runtime name is in the stub (the
    allowlist names what Cython generates)."""
    flags = ["--allowlist", ALLOWLIST]
    helptext = _run(["mypy.stubtest", "--help"], tmp_path).stdout
    if "--ignore-disjoint-bases" in helptext:
        # PEP 800: every cdef class is a "disjoint base"; the stubs target
        # Python 3.9+ type checkers that have no @disjoint_base.
        flags.append("--ignore-disjoint-bases")
    proc = _run(["mypy.stubtest"] + flags + STUBTEST_MODULES, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_mypy
def test_the_typed_modules_check(tmp_path):
    """The annotated modules and the stubs themselves are consistent
    (mypy's default checks; their private helpers are not all annotated)."""
    files = [os.path.join(PKG, name) for name in (
        "__init__.py", "server.py", "client.py", "tcpmulti.py", "filters.py", "errors.py",
        "aio.py", "_kernel.pyi", "_io.pyi", "_filters.pyi", "_components.pyi")]
    proc = _run(["mypy", "--follow-imports=silent", "--no-error-summary"] + files, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
