"""A step's settings: its config section, with the defaults of the one config schema filled in.

The schema (``config.schema.yaml`` beside this module, shipped as package data) holds every
key's type, default and meaning. The workflow validates the campaign config against it, each
``tilepipe`` step fills the section it is given (``--settings``) from it, and config/README.md's
tables are generated from it, so a default is written once.

The rules a JSON schema cannot express (dates in order, a window inside its tile, a minimum
below its maximum) live here too, once: ``section_settings`` runs them for every step, and the
workflow's config check (``tilepipe.campaign.config.config_problems``) runs the same functions.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from datetime import date as Date
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tilepipe.core.errors import ConfigError


def schema_path() -> Path:
    """Where the config schema lies in the installed package (Snakemake validates against it)."""
    return Path(str(resources.files("tilepipe") / "core" / "config.schema.yaml"))


@functools.lru_cache(maxsize=1)
def _parsed_schema() -> dict[str, Any]:
    """The schema parsed once per process (libyaml's parser when PyYAML has it): every step's
    parser reads a dozen sections, and parsing each time cost 0.6 s per ``tilepipe`` start."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(schema_path().read_text(encoding="utf-8"), Loader=loader)


def config_schema() -> dict[str, Any]:
    """The config schema as a dict (a fresh copy: callers may fill defaults into it)."""
    return copy.deepcopy(_parsed_schema())


def resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """``node`` with a local ``$ref`` followed (its own keys, e.g. a default, kept)."""
    ref = node.get("$ref", "")
    if not ref.startswith("#/"):
        return node
    target = root
    for part in ref[2:].split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def fill_defaults(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """``value`` with every missing key that has a schema default added, recursively (as
    Snakemake's ``validate(set_default=True)`` does)."""
    schema = resolve(schema, root)
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, sub in schema.get("properties", {}).items():
        sub = resolve(sub, root)
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = fill_defaults(out[key], sub, root)
    return out


def section_schema(name: str, root: dict[str, Any] | None = None) -> dict[str, Any]:
    """The schema of config section ``name``, its ``$ref`` targets kept resolvable (a fresh
    copy of that section alone: copying the whole schema cost 0.65 ms, a dozen times a step)."""
    root = root or _parsed_schema()
    try:
        node = root["properties"][name]
    except KeyError:
        raise ConfigError(f"no config section {name!r} in the schema") from None
    return copy.deepcopy({**resolve(node, root), "definitions": root.get("definitions", {})})


def section_defaults(name: str) -> dict[str, Any]:
    """The schema's defaults of config section ``name`` (keys without a default left out)."""
    schema = section_schema(name)
    return fill_defaults({}, schema, schema)


def section_settings(
    name: str, given: dict[str, Any] | None = None, need: tuple[str, ...] = (), *, check=True
) -> dict[str, Any]:
    """Section ``name`` as given, defaults filled and checked against the schema (ConfigError
    naming each bad key); of the keys the schema requires, only those in ``need`` must be there
    (a step run by hand needs only what it reads). ``check=False`` only fills the defaults."""
    schema = section_schema(name)
    schema["required"] = [key for key in schema.get("required", []) if key in need]
    settings = fill_defaults(dict(given or {}), schema, schema)
    if not check:
        return settings
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(settings), key=str):
        key = ".".join([name, *map(str, error.absolute_path)])
        problems.append(f"setting '{key}': {error.message}")
    if not problems:  # the rules beyond the schema read values of the schema's shape
        problems = [f"setting '{key}': {msg}" for key, msg in section_problems(name, settings)]
    if problems:
        raise ConfigError("; ".join(problems))
    return settings


# -- rules beyond the schema: each returns (config key, what is wrong) pairs -----------------
Problems = list[tuple[str, str]]
TILE_PIXELS = 10980  # a Sentinel-2 tile's side in 10 m pixels


def date_problems(start: str, end: str) -> Problems:
    """The acquisition window: two calendar dates (YYYY-MM-DD), the start not after the end."""
    days, problems = {}, []
    for name, text in (("start", start), ("end", end)):
        try:
            days[name] = Date.fromisoformat(str(text))
        except ValueError:
            problems.append((f"dates.{name}", f"{text!r} is not a calendar date YYYY-MM-DD"))
    if len(days) == 2 and days["start"] > days["end"]:
        problems.append(("dates", f"start {start} is after end {end}: nothing can be found"))
    return problems


def window_problems(window: Mapping[str, int]) -> Problems:
    """A window (col_off, row_off, width, height in 10 m pixels) checked against the schema's
    window and lying wholly inside its tile (a clipped window would be silently smaller)."""
    schema = section_schema("window")
    shape = resolve(next(o for o in schema["oneOf"] if o.get("type") == "object"), schema)
    validator = jsonschema.Draft202012Validator(shape)
    problems = [
        (".".join(["window", *map(str, e.absolute_path)]), e.message)
        for e in sorted(validator.iter_errors(dict(window)), key=str)
    ]
    if problems:
        return problems
    for off, size in (("col_off", "width"), ("row_off", "height")):
        if window[off] + window[size] > TILE_PIXELS:
            problems.append(
                (
                    f"window.{size}",
                    f"{off} {window[off]} + {size} {window[size]} runs past the tile's "
                    f"{TILE_PIXELS} pixels",
                )
            )
    return problems


def _fields_problems(settings: Mapping[str, Any]) -> Problems:
    """Fields: the largest field kept must exceed the smallest."""
    low, high = settings.get("min_area_m2"), settings.get("max_area_m2")
    if low is None or high is None or high > low:
        return []
    return [("fields.max_area_m2", f"{high} must exceed min_area_m2 {low}")]


def _qc_problems(settings: Mapping[str, Any]) -> Problems:
    """QC: the valid reflectance range and each median-area range with their bounds in order."""
    problems = []
    valid = settings.get("reflectance_range") or {}
    if valid.get("min", 0) >= valid.get("max", float("inf")):
        problems.append(
            ("reflectance_range.min", f"{valid['min']} must be below max {valid['max']}")
        )
    for level in ("warn", "fail"):
        low, high = (settings.get("field_area") or {}).get(level, [0, 0])
        if low > high:
            problems.append((f"field_area.{level}", f"[{low}, {high}]: minimum above maximum"))
    return [(f"qc.{key}", msg) for key, msg in problems]


#: section -> its rules beyond the schema (both the CLI and the workflow run them)
SECTION_RULES: dict[str, Callable[[Mapping[str, Any]], Problems]] = {
    "fields": _fields_problems,
    "qc": _qc_problems,
}


def section_problems(name: str, settings: Mapping[str, Any]) -> Problems:
    """The problems of section ``name`` that its schema cannot see (empty when none)."""
    rule = SECTION_RULES.get(name)
    return rule(settings) if rule else []
