"""The native module's stub (`_native.pyi`) says exactly what the module has: names, methods
and parameter names, checked against the compiled module's own signatures."""

import ast
import inspect
import pathlib

import cloudlet
from cloudlet import _native

STUB = pathlib.Path(cloudlet.__file__).with_name("_native.pyi")


def stub_tree():
    tree = ast.parse(STUB.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {
                n.name: [a.arg for a in n.args.args + n.args.kwonlyargs if a.arg != "self"]
                for n in node.body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = None
    return out


def public(obj):
    return {n for n in dir(obj) if not n.startswith("_")}


def params(fn):
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_stub_matches_the_module():
    stub = stub_tree()
    module_names = public(_native) | {"__version__"}
    assert set(stub) == module_names
    for name, members in stub.items():
        obj = getattr(_native, name)
        if isinstance(members, dict):
            if issubclass(obj, BaseException):
                continue
            assert public(obj) == {m for m in members if m != "__init__"}, name
            for m, args in members.items():
                if m == "__init__":
                    continue
                attr = inspect.getattr_static(obj, m)
                if isinstance(attr, (staticmethod, classmethod)) or callable(attr):
                    assert params(getattr(obj, m)) == args, f"{name}.{m}"
        elif members is not None:
            assert params(obj) == members, name


def test_the_package_is_typed():
    assert pathlib.Path(cloudlet.__file__).with_name("py.typed").exists()
