"""A step's settings: its config section, with the defaults of the one config schema filled in.

The schema (``config.schema.yaml`` beside this module, shipped as package data) holds every
key's type, default and meaning. The workflow validates the campaign config against it, each
``tilepipe`` step fills the section it is given (``--settings``) from it, and config/README.md's
tables are generated from it, so a default is written once.
"""

from __future__ import annotations

import copy
import functools
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
def _schema_text() -> str:
    return schema_path().read_text(encoding="utf-8")


def config_schema() -> dict[str, Any]:
    """The config schema as a dict (a fresh copy: callers may fill defaults into it)."""
    return yaml.safe_load(_schema_text())


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
    """The schema of config section ``name``, its ``$ref`` targets kept resolvable."""
    root = root or config_schema()
    try:
        node = root["properties"][name]
    except KeyError:
        raise ConfigError(f"no config section {name!r} in the schema") from None
    return {**resolve(node, root), "definitions": root.get("definitions", {})}


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
    if problems:
        raise ConfigError("; ".join(problems))
    return settings
