"""Every public name of cypoe (cypoe, cypoe.filters, cypoe.aio,
cypoe.cluster) and every public member of its classes has a docstring: the
Sphinx reference renders them, and an empty entry there says nothing."""
import importlib
import inspect
import re

import pytest

MODULES = ["cypoe", "cypoe.filters", "cypoe.aio", "cypoe.cluster"]

# What Cython's embedsignature puts first in every docstring: a signature
# alone is no docstring.
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->\s*.+)?$")


def _has_doc(obj):
    doc = inspect.getdoc(obj)
    if not doc:
        return False
    lines = [line for line in doc.strip().splitlines() if line.strip()]
    return not (len(lines) == 1 and _SIGNATURE.match(lines[0].strip()))


def _public_names(mod):
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n in vars(mod) if not n.startswith("_")]
    return names


def _ours(obj):
    return (getattr(obj, "__module__", None) or "").startswith("cypoe")


def _members(cls):
    """The public members a class defines itself (what autodoc's
    ``:members:`` renders for it), with what they are."""
    for name, raw in vars(cls).items():
        if name.startswith("_"):
            continue
        kind = type(raw).__name__
        if isinstance(raw, (staticmethod, classmethod)):
            raw = raw.__func__
        if (inspect.isfunction(raw) or inspect.ismethoddescriptor(raw)
                or inspect.isdatadescriptor(raw) or inspect.isbuiltin(raw)
                or kind in ("cython_function_or_method", "property")):
            yield name, getattr(cls, name, raw) if not isinstance(raw, property) else raw


def _missing():
    missing = []
    seen = set()
    for modname in MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError as exc:          # an optional extra (cluster)
            pytest.skip(f"{modname}: {exc}")
        for name in _public_names(mod):
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or inspect.isroutine(obj)) or not _ours(obj):
                continue
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            where = f"{modname}.{name}"
            if not _has_doc(obj):
                missing.append(where)
            if inspect.isclass(obj):
                for member, value in _members(obj):
                    doc_of = value
                    if isinstance(value, property):
                        doc_of = value
                    if not _has_doc(doc_of) and not _inherited_doc(obj, member):
                        missing.append(f"{where}.{member}")
    return missing


def _inherited_doc(cls, name):
    """A base class documents the member (autodoc shows that docstring)."""
    for base in cls.__mro__[1:]:
        if name in vars(base) and _has_doc(getattr(base, name)):
            return True
    return False


def test_every_public_name_and_member_has_a_docstring():
    missing = _missing()
    assert not missing, "no docstring: " + ", ".join(missing)
