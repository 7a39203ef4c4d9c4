"""Campaign configuration checks that speak the user's language: key, bad value, allowed values.

The workflow validates its config with Snakemake's ``validate()`` against the JSON schema; this
module runs first on the same schema and turns each violation into one readable line, and adds
the checks a schema cannot express (real calendar dates, MGRS lettering, model files present).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tilepipe.core.errors import ConfigError
from tilepipe.core.grid import validate_tile
from tilepipe.core.settings import (
    SECTION_RULES,
    date_problems,
    section_problems,
    section_settings,
    window_problems,
)


def load_schema(path: str | Path) -> dict[str, Any]:
    """Read a YAML JSON-schema."""
    return yaml.safe_load(Path(path).read_text())


_NULLS = {"null", "Null", "NULL", "~", "None", ""}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    if ref.startswith("#/"):
        for part in ref[2:].split("/"):
            root = root[part]
        return root
    return node


def _coerce_scalar(value: str, types: list[str]) -> Any:
    if "null" in types and value in _NULLS:
        return None
    if "boolean" in types and value in _BOOLS:
        return _BOOLS[value]
    if "integer" in types:
        try:
            return int(value)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(value)
        except ValueError:
            pass
    return value


def coerce_types(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """Give strings the type the schema expects (``--config`` and profiles pass nested values
    as strings: ``cluster={network_local: true}`` arrives as ``'true'``)."""
    root = root or schema
    schema = _resolve(schema, root)
    for alternative in schema.get("oneOf", []):
        alternative = _resolve(alternative, root)
        if alternative.get("type") == "object" and isinstance(value, dict):
            schema = alternative
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: coerce_types(v, props.get(k) or (extra if isinstance(extra, dict) else {}), root)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [coerce_types(v, schema.get("items", {}), root) for v in value]
    if isinstance(value, str):
        types = schema.get("type", [])
        return _coerce_scalar(value, [types] if isinstance(types, str) else list(types))
    return value


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
    if kind == "oneOf" and (key == "window" or key.startswith("windows.")):
        return (
            f"config key '{key}': must be 'full' or {{col_off, row_off, width, height}} (integers)"
        )
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
    problems += [f"config key '{key}': {msg}" for key, msg in beyond_schema_problems(config)]
    problems += _demo_window_problems(config)
    for key, model in configured_models(config):
        weights = Path(base) / model
        missing = [p for p in (weights, weights.with_suffix(".json")) if not p.is_file()]
        problems += [f"config key '{key}': model file {p} does not exist" for p in missing]
        if not missing:
            problems += model_problems(config, key, weights.with_suffix(".json"))
    return problems


def configured_models(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(config key, model path) of each model the workflow runs."""
    models = [("fields.model", config.get("fields", {}).get("model"))]
    if config.get("superres", {}).get("method", "model") == "model":
        models.append(("superres.model", config["superres"].get("model")))
    return [(key, model) for key, model in models if model is not None]


def download_bands(config: dict[str, Any], *, base: str | Path = ".") -> tuple[str, ...]:
    """The further L2A bands download writes into s2.tif: ``source.bands`` and those the
    models reading s2.tif take (the DR model; the fields model when ``fields.input`` is s2)."""
    from tilepipe.core.inputs import s2_bands

    wanted = set((config.get("source") or {}).get("bands") or ())
    on_s2 = {"superres.model", *(["fields.model"] if _fields_on_s2(config) else [])}
    for key, model in configured_models(config):
        if key in on_s2:
            wanted |= set(_sidecar_of(base, model).get("bands_in") or ())
    return s2_bands(wanted)[4:]


def fields_dates(config: dict[str, Any], *, base: str | Path = ".") -> int:
    """How many dates the configured fields model takes (its sidecar's ``dates``; 1 unread)."""
    model = (config.get("fields") or {}).get("model")
    return int(_sidecar_of(base, model).get("dates", 1)) if model else 1


def _sidecar_of(base: str | Path, model: str) -> dict[str, Any]:
    """A model's sidecar as JSON, {} when missing or unreadable (config_problems names that)."""
    import json

    try:
        return json.loads((Path(base) / model).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}


def _fields_on_s2(config: dict[str, Any]) -> bool:
    """Whether the fields model reads s2.tif (else dr.tif, which holds the core four bands)."""
    return (config.get("fields") or {}).get("input", "dr") == "s2"


def _pairing_problem(pairing: dict[str, Any], dates: int) -> str:
    """What is wrong with ``fields.pairing`` for a field model of ``dates`` dates ("" if not)."""
    from tilepipe.campaign.pairs import window_problems

    paired = bool(pairing.get("windows") or pairing.get("pairs"))
    if dates == 2 and not paired:
        return (
            "takes two dates (window A, then B): set fields.pairing (`windows` a and b, or "
            "`pairs`) to say which scene each is delineated with"
        )
    if dates == 1 and paired:
        return "takes one date, but fields.pairing is set: remove it, or use a two-date model"
    if dates > 2:
        return f"takes {dates} dates: the fields step pairs two"
    problems = window_problems(pairing)
    return f"fields.pairing: {'; '.join(problems)}" if problems else ""


def model_problems(config: dict[str, Any], key: str, sidecar: Path) -> list[str]:
    """A configured model's sidecar against what its step gives it, at parse time: the keys
    themselves, a fields model's bands against dr.tif's (download writes into s2.tif the bands
    the models reading it take), its outputs, dates and scale, and the configured
    window against its patch rule (the weights are checked when the step loads them)."""
    import json

    from tilepipe.core.errors import ModelError
    from tilepipe.core.inputs import REFLECTANCE_BANDS
    from tilepipe.core.settings import section_defaults
    from tilepipe.models import sidecar as sc_mod

    section = key.split(".")[0]
    settings = {**section_defaults(section), **(config.get(section) or {})}
    where = f"config key '{key}': file {sidecar}: "
    try:
        sc = sc_mod.parse_sidecar(json.loads(sidecar.read_text()), where)
        if section == "fields" and not _fields_on_s2(config):  # s2.tif gets the model's bands
            sc_mod.check_source_bands(sc, REFLECTANCE_BANDS, where, "dr.tif")
        if section == "superres":
            sc_mod.check_sr_outputs(sc, REFLECTANCE_BANDS, where)
            wrong = f"a DR model takes one date, not {sc.dates}" if sc.dates != 1 else ""
        else:
            sc_mod.field_roles(sc, where)
            wrong = f"a field model has scale 1, not {sc.scale}" if sc.scale != 1 else ""
            wrong = wrong or _pairing_problem(settings.get("pairing") or {}, sc.dates)
        if wrong:
            raise sc_mod.SidecarError(f"{where}model {sc.id}: {wrong}")
        sc_mod.check_window(
            sc.patch, int(settings["patch"]), int(settings["overlap"]), sc.id, where
        )
    except (OSError, ValueError) as exc:
        return [f"{where}unreadable sidecar ({exc})"]
    except ModelError as exc:
        return [str(exc)]
    return []


def beyond_schema_problems(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The rules each step also runs on its settings (tilepipe.core.settings): dates in order,
    the window inside its tile, each section's cross-key rules."""
    problems = date_problems(config["dates"]["start"], config["dates"]["end"])
    if not config.get("aoi"):
        for window in (config.get("window"), *(config.get("windows") or {}).values()):
            if isinstance(window, dict):
                problems += window_problems(window)
    for name in SECTION_RULES:
        if isinstance(config.get(name), dict):
            problems += section_problems(name, section_settings(name, config[name], check=False))
    return problems


def _demo_window_problems(config: dict[str, Any]) -> list[str]:
    """With a generated demo, each tile's window must lie inside the demo's window of it."""
    demo = config.get("demo") or {}
    if not demo.get("generate") or config.get("aoi"):  # an AOI outside the demo reads nodata
        return []
    from tilepipe.demo.world import (  # only demo campaigns pay for importing the generator
        DEMO_NEIGHBOURS,
        demo_pixel_window,
    )

    size, tiles = demo.get("size", 160), config.get("tiles") or []
    problems = []
    for tile in tiles:
        source = DEMO_NEIGHBOURS.get(tile)
        if source and source not in tiles:
            problems.append(
                f"config key 'tiles': the demo's {tile} sees {source}'s world; add {source}"
            )
        key = f"windows.{tile}" if tile in (config.get("windows") or {}) else "window"
        window = tile_window(config, tile)
        c0, r0, w, h = demo_pixel_window(tile, size)
        if window == "full" or not (
            c0 <= window["col_off"]
            and window["col_off"] + window["width"] <= c0 + w
            and r0 <= window["row_off"]
            and window["row_off"] + window["height"] <= r0 + h
        ):
            problems.append(
                f"config key '{key}': the generated demo covers {tile}'s pixels {c0}..{c0 + w} "
                f"in columns and {r0}..{r0 + h} in rows (demo.size {size}); set its window "
                f"inside it, e.g. {{col_off: {c0}, row_off: {r0}, width: {w}, height: {h}}}"
            )
    return problems


def tile_window(config: dict[str, Any], tile: str) -> Any:
    """The config window of ``tile``: its entry in ``windows``, else ``window``."""
    return (config.get("windows") or {}).get(tile, config.get("window", "full"))


def check_config(config: dict[str, Any], schema: dict[str, Any], *, base: str | Path = ".") -> None:
    """Raise ConfigError listing every problem with ``config``."""
    problems = config_problems(config, schema, base=base)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def window_arg(window: Any, aoi: dict[str, Any] | None = None) -> str:
    """The ``--window`` argument of the CLI for a config ``window`` (or ``aoi``) value."""
    if aoi:
        return f"aoi:{aoi.get('margin_m', 320):g}:{aoi_spec(aoi)}"
    if window in (None, "full"):
        return "full"
    return ",".join(str(window[k]) for k in ("col_off", "row_off", "width", "height"))


def tile_window_arg(config: dict[str, Any], tile: str) -> str:
    """The ``--window`` argument of ``tile``'s steps (the AOI's, its own window, or ``window``)."""
    return window_arg(tile_window(config, tile), config.get("aoi"))


def aoi_spec(aoi: dict[str, Any]) -> str:
    """The AOI as the CLI takes it: ``w,s,e,n`` or a GeoJSON path."""
    if "bbox" in aoi:
        return ",".join(f"{float(v):g}" for v in aoi["bbox"])
    return str(aoi["geojson"])


def campaign_tiles(config: dict[str, Any]) -> list[str]:
    """The campaign's tiles: ``tiles`` as given, else those of the AOI (computed offline)."""
    if config.get("tiles"):
        return list(config["tiles"])
    from tilepipe.core.grid import load_aoi, tiles_for_aoi

    tiles = tiles_for_aoi(load_aoi(aoi_spec(config["aoi"])))
    if not tiles:
        raise ConfigError(f"config key 'aoi': {aoi_spec(config['aoi'])} meets no Sentinel-2 tile")
    return tiles


def apply_cluster_env(env: dict[str, str], *, create_dirs: bool = True) -> list[str]:
    """Export a cluster's job environment (``$VARS`` expanded); return the keys left unresolved.

    TMPDIR and the Apptainer/Singularity caches are created, so jobs never fall back to a small
    home or RAM-disk area. A value whose variables are not set here is neither exported nor
    created: the caller decides whether that is an error (a real run) or not (a dry-run).
    """
    unresolved = []
    for key, value in env.items():
        expanded = os.path.expanduser(os.path.expandvars(value))
        if "$" in expanded:
            unresolved.append(f"{key}={value}")
            continue
        os.environ[key] = expanded
        if create_dirs and key in ("TMPDIR", "APPTAINER_CACHEDIR", "SINGULARITY_CACHEDIR"):
            Path(expanded).mkdir(parents=True, exist_ok=True)
    return unresolved


def cluster_problems(cluster: dict[str, Any], environ: dict[str, str]) -> list[str]:
    """What keeps a campaign from being submitted to a cluster (checked before any job)."""
    if cluster.get("name", "local") == "local":
        return []
    var = cluster.get("account_env", "TILEPIPE_ACCOUNT")
    if environ.get(var, "").strip():
        return []
    return [
        f"the {cluster['name']} profile submits to Slurm but ${var} is not set: "
        f"export {var}=<your project account> (e.g. nn1234k on Saga/Betzy, "
        f"project_465000123 on LUMI, a grant id like pl0896-03 on Eagle); "
        f"a dry-run (-n) plans without it"
    ]
