"""Hypothesis strategies for :mod:`bench.fuzz`: bytes for a :class:`bench.fuzz_targets.Target`.

Every input starts with the selector byte the target reads (which characteristic, which opener,
which file). Mixed together: random bytes; the target's seeds mutated (bytes flipped, inserted,
deleted, truncated, spliced with another seed, CBOR length headers claiming gigabytes); CBOR
documents of any shape, or a seed's CBOR document with one value anywhere replaced by any other;
nesting thousands deep; and, for the configuration files, TOML with the real keys and hostile values.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import cbor2
from hypothesis import strategies as st

from bench.fuzz_targets import Target
from edge_agent.settings import EdgeSettings
from ingest.settings import IngestSettings

__all__ = ["cbor_values", "inputs", "nested", "toml_documents"]

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.just(2**4000)
    | st.floats()
    | st.text(max_size=24)
    | st.binary(max_size=40)
)


def cbor_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        _SCALARS,
        lambda inner: (
            st.lists(inner, max_size=6)
            | st.dictionaries(st.text(max_size=8) | st.integers(-30, 30), inner, max_size=6)
            | st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 3, 4, 5, 18, 96, 258, 55799]), inner)
        ),
        max_leaves=40,
    )


def nested(max_depth: int = 5000) -> st.SearchStrategy[bytes]:
    """Arrays, maps, tags or indefinite arrays nested up to ``max_depth`` levels (raw CBOR)."""
    opener = st.sampled_from([b"\x81", b"\xa1\x00", b"\xd8\x1e", b"\x9f"])
    return st.builds(lambda o, n: o * n + b"\x00", opener, st.integers(1, max_depth))


_HUGE_HEADERS = [b"\x5b" + (2**40).to_bytes(8, "big"), b"\x9b" + (2**40).to_bytes(8, "big"), b"\xba\xff\xff\xff\xff"]


@st.composite
def _mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 5))
        at = draw(st.integers(1, max(1, len(data))))
        if op == 0 and len(data) > 1:
            data[at - 1] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == 2:
            del data[at : at + draw(st.integers(1, 16))]
        elif op == 3:
            del data[at:]
        elif op == 4:
            other = draw(st.sampled_from(seeds))
            data[at:] = other[draw(st.integers(0, len(other))) :]
        else:
            data[at:at] = draw(st.sampled_from(_HUGE_HEADERS))
    return bytes(data)


def _replace_somewhere(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with the node that ``path`` picks (indices taken modulo each level's size) replaced."""
    if not path:
        return value
    if isinstance(doc, dict) and doc:
        key = list(doc)[path[0] % len(doc)]
        return {**doc, key: _replace_somewhere(doc[key], path[1:], value)}
    if isinstance(doc, list) and doc:
        i = path[0] % len(doc)
        return [*doc[:i], _replace_somewhere(doc[i], path[1:], value), *doc[i + 1 :]]
    return value


@st.composite
def _cbor_edits(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    seed = draw(st.sampled_from(seeds))
    try:
        doc = cbor2.loads(seed[1:])
    except Exception:  # noqa: BLE001 - a seed that is not bare CBOR (a COSE envelope is, a TOML file is not)
        return seed
    path = draw(st.lists(st.integers(0, 50), max_size=5))
    edited = _replace_somewhere(doc, path, draw(cbor_values()))
    return seed[:1] + cbor2.dumps(edited)


_KEYS = sorted({f.name for f in dataclasses.fields(EdgeSettings)} | set(IngestSettings.model_fields))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def toml_documents() -> st.SearchStrategy[str]:
    value = st.recursive(
        st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
        lambda i: st.lists(i, max_size=4),
        max_leaves=8,
    )
    lines = st.lists(st.tuples(st.sampled_from(_KEYS), value), max_size=8)
    deep = st.integers(1, 3000).map(lambda n: "state_dir = " + "[" * n + "]" * n)
    tables = st.integers(1, 200).map(lambda n: "[" + ".".join(["a"] * n) + "]\nx = 1")
    return lines.map(lambda kv: "\n".join(f"{k} = {_toml_value(v)}" for k, v in dict(kv).items())) | deep | tables


def inputs(target: Target) -> st.SearchStrategy[bytes]:
    seeds = target.seeds()
    selector = st.integers(0, 255).map(lambda b: bytes([b]))
    generic = (
        st.binary(max_size=600)
        | _mutated(seeds)
        | st.builds(bytes.__add__, selector, st.builds(cbor2.dumps, cbor_values()))
        | st.builds(bytes.__add__, selector, nested())
        | _cbor_edits(seeds)
    )
    if target.name == "config":
        text = toml_documents().map(lambda t: t.encode("utf-8", "surrogatepass"))
        return generic | st.builds(bytes.__add__, st.sampled_from([b"\x00", b"\x01"]), text)
    return generic
