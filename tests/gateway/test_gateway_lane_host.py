"""The C fast lane calls exactly what ``LaneHost`` names, and the relay's glue has it all.

runner/_lane.c looks each callback up by name on the object it is given
(``method_of(conn, "...")``) and sets the relay's ``txn`` on it; a name that
drifted on either side would only show as a Lane that cannot be made, or a
callback nobody documents. The names are read from the C source itself.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from runner._native.loader import native
from runner.gateway.proxy.lane import LaneGlue, LaneHost

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "runner" / "_native"


def _lane_source() -> str:
    """The lane's C sources (the Lane type and its two directions), as one text."""
    sources = sorted(NATIVE.glob("_lane*.c"))
    if not sources:
        pytest.fail(f"the fast lane's C sources (_lane*.c) are not in {NATIVE}")
    return "\n".join(path.read_text() for path in sources)


def _c_methods(source: str) -> set[str]:
    return set(re.findall(r'method_of\(\s*conn\s*,\s*"(\w+)"\s*\)', source))


def _c_attributes(source: str) -> set[str]:
    return set(re.findall(r'PyObject_(?:Set|Get)AttrString\(\s*self->conn\s*,\s*"(\w+)"', source))


def _protocol_methods() -> set[str]:
    return {
        name
        for name, value in vars(LaneHost).items()
        if not name.startswith("__") and inspect.isfunction(value)
    }


def _protocol_attributes() -> set[str]:
    return set(LaneHost.__annotations__)


def test_the_c_source_is_read() -> None:
    source = _lane_source()
    # Not vacuous: the lane has eight callbacks and sets one attribute today.
    assert len(_c_methods(source)) >= 8
    assert _c_attributes(source) == {"txn"}


def test_lane_host_names_exactly_the_callbacks_the_c_code_looks_up() -> None:
    source = _lane_source()
    assert _protocol_methods() == _c_methods(source)
    assert _protocol_attributes() == _c_attributes(source)


def test_no_other_attribute_of_conn_is_used_by_the_c_code() -> None:
    """Every use of ``conn`` in the C code is a lookup above (or keeping it alive)."""
    source = _lane_source()
    uses = re.findall(r"\b\w+\(\s*(?:self->)?conn\s*,\s*\"(\w+)\"", source)
    assert set(uses) <= _c_methods(source) | _c_attributes(source)


def test_every_callback_is_documented_and_implemented_by_the_glue() -> None:
    for name in _protocol_methods():
        declared = getattr(LaneHost, name)
        assert (declared.__doc__ or "").strip(), f"LaneHost.{name} has no docstring"
        implemented = getattr(LaneGlue, name, None)
        assert callable(implemented), f"LaneGlue does not implement {name}"
        # The C code calls positionally: the glue takes at least as many positional
        # arguments as the protocol declares.
        wanted = [
            p
            for p in inspect.signature(declared).parameters.values()
            if p.kind is p.POSITIONAL_ONLY
        ]
        given = [
            p
            for p in inspect.signature(implemented).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        assert len(given) >= len(wanted), name
    assert isinstance(LaneGlue.txn, property) and LaneGlue.txn.fset is not None


@pytest.mark.skipif(native is None, reason="the C extension is not built (or is turned off)")
def test_a_lane_cannot_be_made_on_an_object_missing_a_callback() -> None:
    """The C code really does look the names up: take one away and Lane() refuses."""
    assert native is not None
    methods = sorted(_protocol_methods())

    def host_without(missing: str) -> object:
        namespace = {name: (lambda *args: None) for name in methods if name != missing}
        return type("PartialHost", (), {**namespace, "txn": 0})()

    def make(host: object) -> object:
        queue = native.AuditQueue(lambda: None)
        return native.Lane(host, lambda data: None, lambda data: None, queue, "s", {}, {}, 1024)

    assert make(host_without("")) is not None
    for missing in methods:
        with pytest.raises(AttributeError, match=missing):
            make(host_without(missing))
