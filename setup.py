"""Build of cypoe's compiled core: cython/cypoe/*.pyx -> cypoe._<name>.

Metadata lives in pyproject.toml; this file only declares the extensions.
CYPOE_BUILD_ONLY=_kernel,_filters limits the build to those modules (for
working on one layer while another does not compile yet).
CYPOE_DEBUG=1 builds with -O0 -g and compiles in the debug counters
(cython/cypoe/includes/debug.h, read with cypoe.debug_counters()); a
release build has none of their code.
CYPOE_ANNOTATE=1 writes cython -a HTML next to the sources.
"""
import os
import sys

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CYTHON_DIR = os.path.join("cython", "cypoe")
# Order matters only for readability: lower layers first.
MODULES = ["_buffer", "_kernel", "_filters",
           "_sockets", "_lookup", "_checks", "_linger", "_readwrite", "_tls", "_socketfactory", "_io",
           "_components", "_scan", "_resp", "_framing", "_load"]


def extensions():
    only = os.environ.get("CYPOE_BUILD_ONLY")
    wanted = set(only.split(",")) if only else None
    debug = os.environ.get("CYPOE_DEBUG") == "1"
    extra = ["-O0", "-g"] if debug else ["-O3"]
    macros = [("CYPOE_DEBUG", "1")] if debug else []
    if sys.platform != "win32":
        extra.append("-Wno-unused-function")
    exts = []
    for name in MODULES:
        src = os.path.join(CYTHON_DIR, name + ".pyx")
        if not os.path.exists(os.path.join(HERE, src)):
            continue
        if wanted is not None and name not in wanted:
            continue
        exts.append(
            Extension(
                "cypoe." + name,
                [src],
                include_dirs=[CYTHON_DIR],
                extra_compile_args=extra,
                define_macros=macros,
            )
        )
    return exts


def ext_modules():
    from Cython.Build import cythonize

    return cythonize(
        extensions(),
        include_path=["cython"],
        annotate=os.environ.get("CYPOE_ANNOTATE") == "1",
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )


setup(ext_modules=ext_modules())
