"""Campaign configuration checks that speak the user's language: key, bad value, allowed values.

The workflow validates its config with Snakemake's ``validate()`` against the JSON schema; this
module runs first on the same schema and turns each violation into one readable line, and adds
the checks a schema cannot express (real calendar dates, MGRS lettering, model files present).
"""

from __future__ import annotations

import re
from datetime import date as Date
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tilepipe.errors import ConfigError
from tilepipe.grid import validate_tile


def load_schema(path: str | Path) -> dict[str, Any]:
    """Read a YAML JSON-schema."""
    return yaml.safe_load(Path(path).read_text())


def _key(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _message(error: jsonschema.ValidationError) -> str:
    key, value = _key(error.absolute_path), error.instance
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        where = "" if key == "<top level>" else f"{key}."
        return "; ".join(
            f"unknown config key '{where}{name}' (allowed keys here: {', '.join(allowed)})"
            for name in extra
        )
    if kind == "enum":
        return f"config key '{key}': {value!r} is not allowed; allowed values: " + ", ".join(
            map(str, error.validator_value)
        )
    if kind == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        where = "" if key == "<top level>" else f"{key}."
        return f"config key '{where}{missing[0] if missing else '?'}' is required"
    if kind == "pattern" and "C-HJ-NP-X" in str(error.validator_value):
        return f"config key '{key}': {value!r} is not an MGRS tile id like '33UXP'"
    if kind == "pattern" and r"\d{4}-\d{2}-\d{2}" in str(error.validator_value):
        return f"config key '{key}': {value!r} is not a date written YYYY-MM-DD"
    if kind == "oneOf" and key == "window":
        return "config key 'window': must be 'full' or {col_off, row_off, width, height} (integers)"
    return f"config key '{key}': {error.message}"


def config_problems(
    config: dict[str, Any], schema: dict[str, Any], *, base: str | Path = "."
) -> list[str]:
    """Every problem with ``config``, one readable line each (empty when the config is good)."""
    validator = jsonschema.Draft202012Validator(schema)
    problems = [_message(e) for e in sorted(validator.iter_errors(config), key=str)]
    if problems:
        return problems
    for i, tile in enumerate(config.get("tiles", [])):
        try:
            validate_tile(tile)
        except ConfigError as exc:
            problems.append(f"config key 'tiles[{i}]': {exc}")
    days = {}
    for name in ("start", "end"):
        text = config["dates"][name]
        try:
            days[name] = Date.fromisoformat(text)
        except ValueError:
            problems.append(f"config key 'dates.{name}': {text!r} is not a calendar date")
    if len(days) == 2 and days["start"] > days["end"]:
        problems.append("config key 'dates': start is after end")
    problems += _demo_window_problems(config)
    models = [("fields.model", config.get("fields", {}).get("model"))]
    if config.get("superres", {}).get("method", "model") == "model":
        models.append(("superres.model", config["superres"].get("model")))
    for key, model in models:
        if model is None:
            continue
        weights = Path(base) / model
        for needed in (weights, weights.with_suffix(".json")):
            if not needed.is_file():
                problems.append(f"config key '{key}': model file {needed} does not exist")
    return problems


def _demo_window_problems(config: dict[str, Any]) -> list[str]:
    """With a generated demo, the window must lie inside the demo's window of each tile."""
    demo, window = config.get("demo") or {}, config.get("window", "full")
    if not demo.get("generate"):
        return []
    from tilepipe.demo import DEMO_OFFSET  # only demo campaigns pay for importing the generator
    size = demo.get("size", 160)
    lo, hi = DEMO_OFFSET, DEMO_OFFSET + size
    if window == "full" or not (
        lo <= window["col_off"]
        and window["col_off"] + window["width"] <= hi
        and lo <= window["row_off"]
        and window["row_off"] + window["height"] <= hi
    ):
        return [
            f"config key 'window': the generated demo covers tile pixels {lo}..{hi} in rows and "
            f"columns (demo.size {size}); set window inside it, e.g. "
            f"{{col_off: {lo}, row_off: {lo}, width: {size}, height: {size}}}"
        ]
    return []


def check_config(config: dict[str, Any], schema: dict[str, Any], *, base: str | Path = ".") -> None:
    """Raise ConfigError listing every problem with ``config``."""
    problems = config_problems(config, schema, base=base)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def window_arg(window: Any) -> str:
    """The ``--window`` argument of the CLI for a config ``window`` value."""
    if window in (None, "full"):
        return "full"
    return ",".join(str(window[k]) for k in ("col_off", "row_off", "width", "height"))
