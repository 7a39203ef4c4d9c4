"""config/README.md's key tables, written from the config schema (the one source of defaults).

A table sits between ``<!-- keys: KEY ... -->`` and ``<!-- /keys -->`` and lists every key
under the named top-level keys: type (from the schema's type, enum and bounds), default
(``required`` when the schema requires it) and meaning (the key's description).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tilepipe.core.settings import resolve

MARKERS = re.compile(r"(<!-- keys: ([^>]*?) -->\n)(.*?)(<!-- /keys -->)", re.DOTALL)
HEADER = "| key | type | default | meaning |\n|---|---|---|---|\n"


def _bounds(schema: dict[str, Any]) -> str:
    """``0–1``, ``≥ 8``, ``> 0`` … from a number's bounds."""
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    if lo is not None and hi is not None:
        return f" {lo:g}–{hi:g}"
    if lo is not None:
        return f" {'≥' if 'minimum' in schema else '>'} {lo:g}"
    if hi is not None:
        return f" ≤ {hi:g}"
    return ""


def type_text(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """A key's type as the tables write it: enum values, bounds, ``or null``."""
    schema = resolve(schema, root)
    if "oneOf" in schema and "type" not in schema:
        return " or ".join(type_text(alt, root) for alt in schema["oneOf"])
    if "enum" in schema:
        return ", ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("format") == "date":
        return "`YYYY-MM-DD`"
    types = schema.get("type", "object")
    types = [types] if isinstance(types, str) else list(types)
    main = next((t for t in types if t != "null"), "null")
    text = {"boolean": "bool", "object": "mapping", "array": "list"}.get(main, main)
    if main in ("integer", "number"):
        text += _bounds(schema)
    if "multipleOf" in schema:
        text += f", multiple of {schema['multipleOf']}"
    if main == "array":
        fixed = schema.get("minItems") == schema.get("maxItems") is not None
        items = resolve(schema.get("items", {}), root).get("type", "value")
        text += f" of {schema['minItems']} {items}s" if fixed else f" of {items}s"
    return text + (" or `null`" if "null" in types else "")


def default_text(key: str, schema: dict[str, Any], required: bool) -> str:
    """``required``, the default in backticks, or a dash."""
    if required:
        return "required"
    if "default" not in schema:
        return "—"
    value = schema["default"]
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def _meaning(schema: dict[str, Any]) -> str:
    """The description on one line, safe inside a table cell."""
    return " ".join(str(schema.get("description", "")).split()).replace("|", "\\|")


def _children(schema: dict[str, Any], root: dict[str, Any]) -> list[tuple[str, dict, bool]]:
    """(name, schema, required) of an object's keys, ``x-key`` naming free-form ones."""
    objects = [schema, *(resolve(a, root) for a in schema.get("oneOf", []))]
    out = []
    for node in objects:
        required = set(node.get("required", []))
        out += [(k, v, k in required) for k, v in node.get("properties", {}).items()]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and "properties" in extra:
        out.append((schema.get("x-key", "NAME"), {**extra, "x-free": True}, False))
    return out


def rows(key: str, schema: dict[str, Any], root: dict[str, Any], required: bool) -> list[str]:
    """Table rows of ``key`` and of every key below it."""
    schema = resolve(schema, root)
    children = _children(schema, root)
    own = [
        f"| `{key}` | {type_text(schema, root)} | {default_text(key, schema, required)} "
        f"| {_meaning(schema)} |"
    ]
    if children and "." not in key and "oneOf" not in schema:
        own = []  # a section: its keys are the rows, its description the heading's
    if schema.get("x-free"):
        own = []
    below = [row for name, sub, req in children for row in rows(f"{key}.{name}", sub, root, req)]
    return own + below


def table(keys: list[str], root: dict[str, Any]) -> str:
    """The markdown table of the given top-level keys."""
    required = set(root.get("required", []))
    body = [row for k in keys for row in rows(k, root["properties"][k], root, k in required)]
    return HEADER + "\n".join(body) + "\n"


def render(text: str, root: dict[str, Any]) -> str:
    """``text`` with every marked table rewritten from the schema ``root``."""

    def replace(match: re.Match) -> str:
        keys = match.group(2).split()
        return match.group(1) + table(keys, root) + match.group(4)

    return MARKERS.sub(replace, text)
