"""A deterministic instance of a JSON Schema: the simulator's "structured output" model.

`schema_instance(schema, material)` returns a JSON value that validates against `schema`, chosen
by hashing `material` with each value's JSON Pointer, so the same request always gets the same
value and two requests (or two choices) usually differ. It covers what tool parameter schemas and
`response_format` schemas written by hand, by pydantic and by the openai SDK (`to_strict_json_schema`)
use:

    object        properties (all of them; only `required` ones below the depth limit),
                  additionalProperties as a schema when there are no properties, minProperties
    string        enum, const, format (date-time, date, time, email, uri, uuid, ipv4, ipv6,
                  hostname, duration), minLength / maxLength
    integer       minimum / maximum / exclusiveMinimum / exclusiveMaximum (both drafts), multipleOf
    number        the same, with two decimals
    boolean, null
    array         items, prefixItems (and the old list form of items), minItems / maxItems,
                  uniqueItems
    combinators   anyOf / oneOf take the first branch (below the depth limit: the first branch
                  that does not recurse), allOf is merged, a list `type` takes its first non-null
    references    `$ref` to `#`, `#/$defs/...`, `#/definitions/...` or any local JSON Pointer;
                  sibling keywords beside a `$ref` are merged over its target

Not honoured: `pattern`, `patternProperties`, `not`, `if`/`then`/`else`, `dependentRequired`,
remote references. Invariant: recursion stops, because past `MAX_DEPTH` nested values only
fill what is required (and arrays only `minItems`); a schema that requires infinite nesting
raises `SchemaError`, as do a `$ref` that does not resolve, a `$ref`/`allOf` cycle, and a schema
asking for more than `_MAX_VALUES` values or a `min*` count above `_MAX_COUNT` (bounded work
whatever a client sends).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from gateway.simulator.textgen import VOCAB

MAX_DEPTH = 6
_HARD_DEPTH = 64
_MAX_VALUES = 50_000  # values in one instance: beyond this the schema asks for too much
_MAX_COUNT = 1_000  # minItems / minProperties / minLength the simulator will satisfy
_DEFAULT_ITEMS = 2
_OBJECT_FALLBACK: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}},
                                    "required": ["answer"]}


class SchemaError(ValueError):
    """The schema cannot be instantiated (an unresolvable `$ref`, endless required nesting, bad shape)."""


def schema_instance(schema: Any, material: bytes) -> Any:
    """A JSON value valid against `schema`, determined by `material`."""
    return _Instantiator(schema, material).value(schema, "", 0)


def object_schema_for_json_mode() -> dict[str, Any]:
    """The schema `json_object` answers follow: one string property, `answer`."""
    return _OBJECT_FALLBACK


class _Instantiator:
    """One instantiation: the root (for `$ref`) and the hash material."""

    def __init__(self, root: Any, material: bytes) -> None:
        self.root = root
        self.material = material
        self.made = 0

    def number(self, path: str, salt: str = "") -> int:
        """A deterministic non-negative integer for a location."""
        digest = hashlib.sha256(self.material + b"\x00" + (path + "\x00" + salt).encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big")

    def value(self, schema: Any, path: str, depth: int) -> Any:
        if depth > _HARD_DEPTH:
            raise SchemaError("the schema requires values nested deeper than the simulator allows")
        self.made += 1
        if self.made > _MAX_VALUES:
            raise SchemaError(f"the schema asks for more than {_MAX_VALUES} values")
        if schema is True or schema == {}:
            return self.words(path, 1, None)
        if not isinstance(schema, dict):
            raise SchemaError(f"a schema must be an object or a boolean, got {type(schema).__name__} at '{path}'")
        schema = self.flatten(schema)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[self.number(path) % len(enum)]
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.value(self.branch(branches, depth), path, depth)
        kind = _kind(schema)
        if kind == "object":
            return self.object(schema, path, depth)
        if kind == "array":
            return self.array(schema, path, depth)
        if kind == "integer":
            return self.integer(schema, path)
        if kind == "number":
            return self.decimal(schema, path)
        if kind == "boolean":
            return self.number(path) % 2 == 1
        if kind == "null":
            return None
        return self.string(schema, path)

    def flatten(self, schema: dict[str, Any], nesting: int = 0) -> dict[str, Any]:
        """Resolve `$ref` (siblings win) and merge `allOf`, repeatedly."""
        seen = nesting
        while "$ref" in schema or "allOf" in schema:
            seen += 1
            if seen > _HARD_DEPTH:
                raise SchemaError("`$ref` / `allOf` chain does not end")
            if "$ref" in schema:
                siblings = {k: v for k, v in schema.items() if k != "$ref"}
                schema = {**self.resolve(schema["$ref"]), **siblings}
            else:
                parts = schema["allOf"] if isinstance(schema["allOf"], list) else []
                schema = _merge_all_of(schema, [self.flatten(part, seen) if isinstance(part, dict) else {}
                                                for part in parts])
        return schema

    def resolve(self, ref: Any) -> dict[str, Any]:
        """The schema a local `$ref` points at."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(f"only local `$ref`s are supported, got {ref!r}")
        node: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SchemaError(f"`$ref` {ref!r} does not resolve")
        if node is True:
            return {}
        if not isinstance(node, dict):
            raise SchemaError(f"`$ref` {ref!r} does not point at a schema")
        return node

    def branch(self, branches: list[Any], depth: int) -> Any:
        """anyOf/oneOf: the first branch; below the depth limit, the first that does not recurse."""
        if depth >= MAX_DEPTH:
            for candidate in branches:
                if not _mentions_ref(candidate):
                    return candidate
        return branches[0]

    def object(self, schema: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        properties = _dict(schema, "properties")
        listed = schema.get("required")
        required = [r for r in listed if isinstance(r, str)] if isinstance(listed, list) else []
        names = list(properties) if depth < MAX_DEPTH else [n for n in properties if n in required]
        out: dict[str, Any] = {}
        for name in names + [r for r in required if r not in properties]:
            sub = properties.get(name, schema.get("additionalProperties", True))
            if sub is False:
                continue
            out[name] = self.value(True if sub is None else sub, f"{path}/{name}", depth + 1)
        extra = schema.get("additionalProperties")
        wanted = _count(schema, "minProperties") or 0
        if not properties and isinstance(extra, dict) and depth < MAX_DEPTH:
            wanted = max(wanted, 1)
        index = 1
        while len(out) < wanted:
            key = f"{VOCAB[self.number(path, f'key{index}') % len(VOCAB)]}_{index}"
            sub = extra if isinstance(extra, dict) else True
            out.setdefault(key, self.value(sub, f"{path}/{key}", depth + 1))
            index += 1
        return out

    def array(self, schema: dict[str, Any], path: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems", True)
        prefix = prefix if isinstance(prefix, list) else []
        low = _count(schema, "minItems") or 0
        high = _count(schema, "maxItems")
        count = max(low, len(prefix)) if depth >= MAX_DEPTH else max(low, len(prefix), _DEFAULT_ITEMS)
        if items is False:
            count = min(count, len(prefix))
        if high is not None:
            count = min(count, high)
        unique = schema.get("uniqueItems") is True
        out: list[Any] = []
        seen: set[str] = set()
        attempt = 0
        while len(out) < count and attempt < count * 8 + 8:
            position = len(out)
            sub = prefix[position] if position < len(prefix) else items
            item = self.value(sub, f"{path}/{position}" + (f"~{attempt}" if attempt else ""), depth + 1)
            attempt += 1
            key = repr(item)
            if unique and key in seen:
                continue
            seen.add(key)
            out.append(item)
        if len(out) < low:
            raise SchemaError(f"cannot find {low} distinct items for '{path or '/'}'")
        return out

    def integer(self, schema: dict[str, Any], path: str) -> int:
        low, high = _bounds(schema, integral=True)
        step = schema.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            first = -(-low // step) * step
            choices = max(0, (high - first) // step + 1)
            if choices == 0:
                raise SchemaError(f"no multiple of {step} between {low} and {high} at '{path or '/'}'")
            return int(first + step * (self.number(path) % choices))
        return int(low + self.number(path) % (high - low + 1))

    def decimal(self, schema: dict[str, Any], path: str) -> float | int:
        step = schema.get("multipleOf")
        if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
            low, high = _bounds(schema, integral=False)
            first, last = int(-(-low // step)), int(high // step)
            if last < first:
                raise SchemaError(f"no multiple of {step} in range at '{path or '/'}'")
            span = last - first + 1
            candidates = [round((first + (self.number(path) + j) % span) * step, 10) for j in range(16)]
            # Validators divide by the step in floating point (0.3 / 0.1 is not 3): prefer a
            # multiple whose quotient is exact.
            exact: float = next((c for c in candidates if (c / step).is_integer()), candidates[0])
            return exact
        low, high = _bounds(schema, integral=False)
        cents = round(low * 100), round(high * 100)
        value = (cents[0] + self.number(path) % max(1, cents[1] - cents[0] + 1)) / 100
        return float(min(max(value, low), high))

    def string(self, schema: dict[str, Any], path: str) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            return _FORMATS[fmt](self.number(path), self.word(path))
        low = _count(schema, "minLength") or 0
        high = _count(schema, "maxLength")
        return self.words(path, low, high)

    def word(self, path: str, index: int = 0) -> str:
        return VOCAB[self.number(path, f"w{index}") % len(VOCAB)]

    def words(self, path: str, low: int, high: int | None) -> str:
        """Two or three words, lengthened to `low` and cut to `high` characters."""
        text = " ".join(self.word(path, i) for i in range(2 + self.number(path, "n") % 2))
        index = 3
        while len(text) < low:
            text += " " + self.word(path, index)
            index += 1
        if high is not None:
            text = text[:high].rstrip() if len(text[:high].rstrip()) >= low else text[:high]
        return text


def _dict(schema: dict[str, Any], key: str) -> dict[str, Any]:
    value = schema.get(key)
    return value if isinstance(value, dict) else {}


def _count(schema: dict[str, Any], key: str) -> int | None:
    """A non-negative integer keyword (`minItems`...), or None when absent or malformed."""
    value = schema.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    if key.startswith("min") and value > _MAX_COUNT:
        raise SchemaError(f"`{key}` {value} is more than the simulator makes ({_MAX_COUNT})")
    return value


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [k for k in kind if k != "null"]
        return concrete[0] if concrete else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "additionalProperties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        return "number"
    return "string"


def _bounds(schema: dict[str, Any], *, integral: bool) -> tuple[Any, Any]:
    """The inclusive range [low, high] a number must lie in (defaults 0..100 around the bounds)."""
    def num(key: str) -> float | None:
        value = schema.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    nudge = 1 if integral else 0.01
    low, high = num("minimum"), num("maximum")
    for key, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = schema.get(key)
        bound = num(key)
        if value is True and num(flag) is not None:  # draft 4 boolean form
            bound = num(flag)
        if bound is None:
            continue
        if key == "exclusiveMinimum":
            low = bound + nudge if low is None else max(low, bound + nudge)
        else:
            high = bound - nudge if high is None else min(high, bound - nudge)
    if low is None:
        low = 0 if high is None or high >= 0 else high - 100
    if high is None:
        high = low + 100
    if integral:
        low, high = int(-(-low // 1)), int(high // 1)
    if high < low:
        raise SchemaError(f"empty numeric range [{low}, {high}]")
    return low, high


def _merge_all_of(schema: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def _mentions_ref(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "$ref" in schema or any(_mentions_ref(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_mentions_ref(v) for v in schema)
    return False


def _uuid(n: int, _word: str) -> str:
    return str(uuid.UUID(int=(n << 64 | n) & ((1 << 128) - 1), version=4))


_FORMATS: dict[str, Callable[[int, str], str]] = {
    "date-time": lambda n, _w: f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
    "date": lambda n, _w: f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}",
    "time": lambda n, _w: f"{n % 24:02d}:{n % 60:02d}:00Z",
    "email": lambda n, w: f"{w}{n % 100}@example.com",
    "uri": lambda n, w: f"https://example.com/{w}/{n % 1000}",
    "url": lambda n, w: f"https://example.com/{w}/{n % 1000}",
    "uri-reference": lambda n, w: f"/{w}/{n % 1000}",
    "hostname": lambda n, w: f"{w}{n % 100}.example.com",
    "ipv4": lambda n, _w: f"10.{n % 256}.{(n >> 8) % 256}.{1 + (n >> 16) % 254}",
    "ipv6": lambda n, _w: f"2001:db8::{n % 65536:x}",
    "uuid": _uuid,
    "duration": lambda n, _w: f"PT{1 + n % 59}M",
}
