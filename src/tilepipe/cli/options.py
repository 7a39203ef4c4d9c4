"""What every step's command line shares: tile/date, windows, and a config section as settings.

Convention: a step reads its config section from ``--settings`` (JSON inline or ``@file``); the
config schema fills what it leaves out, and the few flags kept for hand use (generated from the
schema, so their types, choices and defaults are the config's) override single keys of it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tilepipe.core.errors import ConfigError
from tilepipe.core.settings import (
    date_problems,
    section_schema,
    section_settings,
    window_problems,
)

_NULLS = {"null", "none", "None", ""}


def window(text: str | None, tile: str | None = None) -> tuple[int, int, int, int] | None:
    """Parse ``col_off,row_off,width,height`` (10 m pixels of the tile), ``full``, or
    ``aoi:MARGIN_M:AOI`` (AOI a bbox ``w,s,e,n`` or a GeoJSON path): the tile's part of it."""
    if text is None or text in ("", "full", "none", "None"):
        return None
    if text.startswith("aoi:") and tile:
        return _aoi_window(text, tile)
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ConfigError(f"window {text!r} must be 'col_off,row_off,width,height' or 'full'")
    names = ("col_off", "row_off", "width", "height")
    refuse(window_problems(dict(zip(names, values, strict=True))))
    return values  # type: ignore[return-value]


def pairs_arg(items: list[str], what: str) -> dict[str, str]:
    """``TILE=VALUE`` arguments as {tile: value}; ConfigError for a malformed or repeated one."""
    from tilepipe.core.grid import validate_tile

    out: dict[str, str] = {}
    for item in items:
        tile, sep, value = item.partition("=")
        if not sep or not value:
            raise ConfigError(f"--{what} {item!r}: expected TILE=VALUE")
        validate_tile(tile)
        if tile in out:
            raise ConfigError(f"--{what}: tile {tile} given more than once")
        out[tile] = value
    return out


def refuse(problems: list[tuple[str, str]]) -> None:
    """Raise one ConfigError naming every (key, problem) of the rules beyond the schema."""
    if problems:
        raise ConfigError("; ".join(f"setting '{key}': {msg}" for key, msg in problems))


def check_dates(start: str, end: str) -> None:
    """Refuse an acquisition window the workflow's config check would refuse."""
    refuse(date_problems(start, end))


def _aoi_window(text: str, tile: str) -> tuple[int, int, int, int]:
    """The window of ``tile`` that an ``aoi:MARGIN_M:AOI`` argument covers."""
    from tilepipe.core.grid import aoi_window, load_aoi

    margin, _, spec = text[4:].partition(":")
    try:
        margin_m = float(margin)
    except ValueError:
        raise ConfigError(f"window {text!r}: expected aoi:MARGIN_M:AOI") from None
    found = aoi_window(tile, load_aoi(spec), margin_m)
    if found is None:
        raise ConfigError(f"tile {tile}: the AOI {spec} does not meet this tile")
    return found


def bounds(text: str | None) -> tuple[float, float, float, float] | None:
    """Parse ``minx,miny,maxx,maxy`` in the raster's CRS, or ``full``."""
    if text is None or text in ("", "full"):
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] >= values[2] or values[1] >= values[3]:
        raise ConfigError(f"AOI {text!r} must be 'minx,miny,maxx,maxy' (raster CRS) or 'full'")
    return values  # type: ignore[return-value]


def json_arg(text: str) -> dict:
    """A JSON object given inline or as ``@file``."""
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError("expected a JSON object")
    return value


def add_tile_date(p: argparse.ArgumentParser, *, tile: bool = True, date: bool = True) -> None:
    """The ``--tile`` and ``--date`` a per-scene step is run for."""
    if tile:
        p.add_argument("--tile", required=True, help="MGRS tile id, e.g. 33UXP")
    if date:
        p.add_argument("--date", required=True, help="acquisition date YYYY-MM-DD")


def _scalar(types: list[str]):
    """An argparse ``type`` for a schema scalar (``null`` accepted where the schema allows)."""
    base = int if "integer" in types else float if "number" in types else str

    def parse(text: str) -> Any:
        if "null" in types and text in _NULLS:
            return None
        return base(text)

    parse.__name__ = base.__name__  # argparse names the type in its error messages
    return parse


def _help(schema: dict[str, Any]) -> str:
    """The help of a flag: the key's description and default, from the schema."""
    text = " ".join(str(schema.get("description", "")).split())
    if "default" in schema:
        text += f" (default: {json.dumps(schema['default'])})"
    return text.replace("%", "%%")


def add_key_flag(p: argparse.ArgumentParser, key: str, schema: dict, aliases=()) -> None:
    """One flag overriding settings key ``key``, typed and documented by its schema."""
    types = schema.get("type", "string")
    types = [types] if isinstance(types, str) else list(types)
    flags = [f"--{key.replace('_', '-')}", *aliases]
    kwargs: dict[str, Any] = {"dest": f"setting_{key}", "default": None, "help": _help(schema)}
    if types == ["boolean"]:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = _scalar(types)
        kwargs["metavar"] = key.upper()
        if "enum" in schema:
            kwargs["choices"] = schema["enum"]
    p.add_argument(*flags, **kwargs)


def add_settings(
    p: argparse.ArgumentParser,
    section: str,
    keys: tuple[str, ...] = (),
    aliases: dict[str, tuple[str, ...]] | None = None,
    settings_aliases: tuple[str, ...] = (),
) -> None:
    """``--settings`` (config section ``section`` as JSON or @file) and a flag per key in
    ``keys`` for hand use; ``step_settings`` merges them over the schema's defaults."""
    p.add_argument(
        "--settings",
        *settings_aliases,
        default=None,
        metavar="JSON",
        help=f"the config `{section}` section as JSON or @file; the schema fills what it leaves "
        "out and the flags below override it",
    )
    props = section_schema(section)["properties"]
    for key in keys:
        add_key_flag(p, key, props[key], (aliases or {}).get(key, ()))
    p.set_defaults(section=section, section_keys=tuple(keys))


def step_settings(
    args: argparse.Namespace, need: tuple[str, ...] = (), check: Callable | None = None
) -> dict[str, Any]:
    """The step's section: schema defaults, then ``--settings``, then explicit flags; ``check``
    (the step's own checks, which name every problem in its words) runs before the schema's."""
    given = json_arg(args.settings) if args.settings else {}
    for key in args.section_keys:
        value = getattr(args, f"setting_{key}")
        if value is not None:
            given[key] = value
    if check is not None:
        check(section_settings(args.section, given, need, check=False))
    return section_settings(args.section, given, need)


def engine_kwargs(settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Arguments every step run by the tiling engine takes."""
    engine = {name: settings[name] for name in ("patch", "overlap", "batch", "device")}
    return {**engine, "tile": args.tile, "date": args.date}


def add_manifest_outputs(p: argparse.ArgumentParser, what: str) -> None:
    """Add ``--manifest``/``--results``: name every tile-date's ``what`` by the manifest."""
    p.add_argument(
        "--manifest",
        default=None,
        help=f"also read RESULTS/{{tile}}/{{date}}/{what} of every tile-date in this manifest",
    )
    p.add_argument("--results", default="results", help="the results directory (--manifest)")


def manifest_outputs(manifest: str | None, results: str, name: str) -> list[Path]:
    """``results/{tile}/{date}/name`` of each manifest row: a campaign's list of a scene output
    read from a file, as 10,000 paths would overflow a command line (bash's 128 KiB argument)."""
    if manifest is None:
        return []
    from tilepipe.acquire.stac import read_manifest

    return [Path(results) / r["tile"] / r["date"] / name for r in read_manifest(manifest)]
