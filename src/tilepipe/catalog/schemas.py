"""The published STAC JSON schemas, gathered from PyPI packages for offline validation.

stac-validator fetches every schema from schemas.stacspec.org and stac-extensions.github.io,
which a compute node (or this project's CI) cannot reach. Nothing here is written by hand:

- STAC core 1.1.0 and GeoJSON: the copies pystac ships in ``pystac/validation/jsonschemas``;
- the extensions (projection 2.0.0, raster 1.1.0, eo 1.1.0, processing 1.0.0): the HTTP
  responses of stac-extensions.github.io that pystac-ext-raster's sdist records as test
  cassettes, taken from the sdist (pinned version and SHA-256) that pip downloads from PyPI;
- PROJJSON 0.7 (referenced by the projection schema): the copy PROJ's data directory ships
  inside the pyproj wheel.

``schema_config`` writes stac-validator's ``--schema-config`` file that maps each published URL
to its local copy; every copy's ``$id`` is checked against the URL it stands for.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

import yaml

from tilepipe.core.errors import InputError
from tilepipe.core.raster import atomic_output

STAC_VERSION = "1.1.0"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EO = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
PROCESSING = "https://stac-extensions.github.io/processing/v1.0.0/schema.json"
EXTENSIONS = (PROJECTION, RASTER, EO, PROCESSING)

#: the sdist whose recorded responses hold the extension schemas, and the recording inside it
SDIST = "pystac-ext-raster==1.1.1"
SDIST_FILE = "pystac_ext_raster-1.1.1.tar.gz"
SDIST_SHA256 = "1249d34332cfd05634a31eb6f9d63d977cef4320d68876054bdbc1319ffc8b8a"
CASSETTE = "pystac_ext_raster-1.1.1/tests/cassettes/test_raster/test_validate_raster.yaml"

CORE = f"https://schemas.stacspec.org/v{STAC_VERSION}"
#: pystac's flat file name -> the published URL (catalog and collection live in their own specs)
CORE_FILES = {
    "catalog.json": f"{CORE}/catalog-spec/json-schema/catalog.json",
    "collection.json": f"{CORE}/collection-spec/json-schema/collection.json",
    **{
        name: f"{CORE}/item-spec/json-schema/{name}"
        for name in (
            "item.json",
            "basics.json",
            "bands.json",
            "common.json",
            "data-values.json",
            "datetime.json",
            "instrument.json",
            "licensing.json",
            "provider.json",
        )
    },
}
GEOJSON_FILES = {
    name: f"https://geojson.org/schema/{name}" for name in ("Feature.json", "Geometry.json")
}
PROJJSON = "https://proj.org/schemas/v0.7/projjson.schema.json"
#: ``$id`` values the published documents really carry where they differ from their URL (STAC
#: 1.1.0's common.json says ``.../commonjson``; rustac and pystac ship it the same way)
PUBLISHED_IDS = {
    f"{CORE}/item-spec/json-schema/common.json": f"{CORE}/item-spec/json-schema/commonjson"
}


def default_cache() -> Path:
    """Where the gathered schemas are kept: ``$TILEPIPE_STAC_SCHEMAS`` or the user cache."""
    if os.environ.get("TILEPIPE_STAC_SCHEMAS"):
        return Path(os.environ["TILEPIPE_STAC_SCHEMAS"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tilepipe" / "stac-schemas"


def _same_id(schema: dict, url: str) -> bool:
    """Whether a schema's ``$id`` names ``url`` (a trailing ``#`` is the same document)."""
    return str(schema.get("$id", "")).rstrip("#") in (url, PUBLISHED_IDS.get(url))


def _checked(path: Path, url: str) -> str:
    """The local copy of ``url`` as a path string, after checking its ``$id``."""
    schema = json.loads(path.read_text(encoding="utf-8"))
    if not _same_id(schema, url):
        raise InputError(f"file {path}: $id {schema.get('$id')!r} is not {url}")
    return str(path)


def packaged_schemas() -> dict[str, str]:
    """URL -> local path of the schemas installed packages ship (STAC core, GeoJSON, PROJJSON)."""
    import pyproj.datadir

    jsonschemas = resources.files("pystac.validation") / "jsonschemas"
    core = Path(str(jsonschemas / "stac-spec" / f"v{STAC_VERSION}"))
    geojson = Path(str(jsonschemas / "geojson"))
    found = {url: _checked(core / name, url) for name, url in CORE_FILES.items()}
    found |= {url: _checked(geojson / name, url) for name, url in GEOJSON_FILES.items()}
    projjson = Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json"
    found[PROJJSON] = _checked(projjson, PROJJSON)
    return found


def _download_sdist(dest: Path) -> Path:
    """pip-download the pinned sdist from the package index and check its SHA-256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    run = subprocess.run([*cmd, "--dest", str(dest), SDIST], capture_output=True, text=True)
    path = dest / SDIST_FILE
    if run.returncode != 0 or not path.is_file():
        raise InputError(f"pip download {SDIST} failed: {run.stderr.strip()[-500:]}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise InputError(f"file {path}: SHA-256 {digest}, expected {SDIST_SHA256}")
    return path


def recorded_responses(sdist: Path) -> dict[str, str]:
    """URL -> response body of every successful request recorded in the sdist's cassette."""
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(CASSETTE)
        if member is None:
            raise InputError(f"file {sdist}: no {CASSETTE}")
        cassette = yaml.safe_load(member.read())
    return {
        entry["request"]["uri"]: entry["response"]["body"]["string"]
        for entry in cassette["interactions"]
        if entry["response"]["status"]["code"] == 200
    }


def extension_schemas(cache: Path) -> dict[str, str]:
    """URL -> local path of the extension schemas, taken from the recorded responses once."""
    paths = {url: cache / url.split("://", 1)[1] for url in EXTENSIONS}
    if not all(p.is_file() for p in paths.values()):
        with tempfile.TemporaryDirectory() as tmp:
            bodies = recorded_responses(_download_sdist(Path(tmp)))
        for url, path in paths.items():
            if url not in bodies:
                raise InputError(f"{SDIST}: {CASSETTE} records no response for {url}")
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as tmp_path:
                tmp_path.write_text(bodies[url], encoding="utf-8")
    return {url: _checked(path, url) for url, path in paths.items()}


def schema_config(cache: Path | None = None) -> Path:
    """Write (once) and return stac-validator's ``--schema-config``: every URL -> its copy."""
    cache = cache or default_cache()
    mapping = {**packaged_schemas(), **extension_schemas(cache)}
    path = cache / "schema-config.json"
    text = json.dumps({"schemas": mapping}, indent=2, sort_keys=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return path


if __name__ == "__main__":  # python -m tilepipe.catalog.schemas [CACHE]: print the config path
    print(schema_config(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
