"""cloudlet for Python: a thin layer over the Rust library (see the bindings issue for the full API)."""

import json as _json

from . import _native

__version__ = _native.__version__


def validate(path):
    """Validate the lab at ``path``; returns the list of diagnostics (dicts with positions)."""
    return _json.loads(_native.validate(str(path)))["diagnostics"]


def schema():
    """The JSON Schema of the lab format, as a dict."""
    return _json.loads(_native.schema())
