"""Sentinel-2 L2A sources behind one interface: how to search them and how to read their assets.

``local`` (a static catalog such as the demo's, or any STAC API with public assets),
``earth_search`` (Element84, collection ``sentinel-2-c1-l2a``, public COGs),
``planetary_computer`` (SAS tokens per collection, signed right before each read, re-signed on
403 or near ``msft:expiry``) and ``cdse`` (Copernicus Data Space: ``s3://eodata`` through
GDAL's S3 driver with keys from the environment or ``~/.netrc``, at most 4 connections).
Credentials come only from the environment or ``~/.netrc``; hrefs stay unsigned everywhere but
in the string handed to GDAL for one read.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tilepipe.core.errors import ConfigError, InputError

log = logging.getLogger(__name__)

PC_TOKEN_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"
CDSE_S3_ENDPOINT = "eodata.dataspace.copernicus.eu"

#: Per source: default catalog, collection, tile property, and connections a campaign may hold
#: at once (CDSE allows 4 concurrent connections, the others publish no limit: docs/sources.md).
PROVIDERS: dict[str, dict[str, Any]] = {
    "local": {"catalog": None, "collection": "sentinel-2-l2a", "connections": 16},
    "earth_search": {
        "catalog": "https://earth-search.aws.element84.com/v1",
        "collection": "sentinel-2-c1-l2a",
        "connections": 16,
    },
    "planetary_computer": {
        "catalog": "https://planetarycomputer.microsoft.com/api/stac/v1",
        "collection": "sentinel-2-l2a",
        "connections": 8,
    },
    "cdse": {
        "catalog": "https://stac.dataspace.copernicus.eu/v1",
        "collection": "sentinel-2-l2a",
        "connections": 4,
    },
}


def is_remote(href: str) -> bool:
    """True for hrefs read over the network (http(s), s3, GDAL virtual network paths)."""
    return href.startswith(("http://", "https://", "s3://", "/vsicurl/", "/vsis3/"))


def gdal_path(href: str) -> str:
    """The path GDAL opens for an href: /vsicurl/ for HTTP(S), /vsis3/ for s3://."""
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return f"/vsis3/{href[5:]}"
    return href


def netrc_login(host: str, path: str | None = None) -> tuple[str, str] | None:
    """(login, password) for ``host`` from ``~/.netrc`` (or ``path``), or None."""
    file = Path(path or os.path.expanduser("~/.netrc"))
    if not file.is_file():
        return None
    try:
        entry = netrc.netrc(str(file)).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from exc
    if not entry or not entry[0] or not entry[2]:
        return None
    return entry[0], entry[2]


@dataclass
class Source:
    """A public source (``local``, ``earth_search``): search as asked, read hrefs unsigned."""

    name: str
    collection: str
    can_resign: bool = field(default=False, init=False)

    def search_filter(self, tiles: list[str], max_cloud: float) -> dict[str, Any]:
        """Item-search arguments selecting ``tiles`` under ``max_cloud`` (STAC query extension)."""
        return {
            "query": {
                "grid:code": {"in": [f"MGRS-{t}" for t in sorted(tiles)]},
                "eo:cloud_cover": {"lte": max_cloud},
            }
        }

    def read_path(self, href: str, *, resign: bool = False) -> str:
        """The string GDAL opens for ``href`` (signed where the source needs it)."""
        return gdal_path(href)

    def gdal_options(self) -> dict[str, str]:
        """GDAL configuration this source needs besides the HTTP settings."""
        return {"AWS_NO_SIGN_REQUEST": "YES"}


@dataclass
class PlanetaryComputer(Source):
    """Planetary Computer: a SAS token per collection from ``token_url``, cached until
    ``resign_margin_s`` before its ``msft:expiry`` and fetched afresh on request (after 403)."""

    token_url: str = PC_TOKEN_URL
    resign_margin_s: float = 300.0
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _token: str | None = field(default=None, init=False, repr=False)
    _expiry: datetime | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.can_resign = True

    def search_filter(self, tiles: list[str], max_cloud: float) -> dict[str, Any]:
        return {
            "query": {
                "s2:mgrs_tile": {"in": sorted(tiles)},
                "eo:cloud_cover": {"lte": max_cloud},
            }
        }

    def token(self, *, refresh: bool = False) -> str:
        """A SAS token valid for at least ``resign_margin_s`` more seconds."""
        with self._lock:
            now = datetime.now(timezone.utc)
            stale = self._expiry is None or self._expiry - now < timedelta(
                seconds=self.resign_margin_s
            )
            if refresh or stale or self._token is None:
                self._token, self._expiry = self._fetch_token()
            return self._token

    def _fetch_token(self) -> tuple[str, datetime]:
        headers = {"Accept": "application/json"}
        key = self.environ.get("PC_SDK_SUBSCRIPTION_KEY")
        if key:
            headers["Ocp-Apim-Subscription-Key"] = key
        url = f"{self.token_url.rstrip('/')}/{self.collection}"
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=30
            ) as r:
                body = json.loads(r.read())
            expiry = datetime.fromisoformat(body["msft:expiry"].replace("Z", "+00:00"))
            token = str(body["token"])
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(
                f"SAS token for collection {self.collection} from {url}: {exc}"
            ) from exc
        log.info("SAS token for %s fetched, expires %s", self.collection, expiry.isoformat())
        return token, expiry

    def read_path(self, href: str, *, resign: bool = False) -> str:
        if not href.startswith(("http://", "https://")):
            return gdal_path(href)
        sep = "&" if "?" in href else "?"
        return gdal_path(f"{href}{sep}{self.token(refresh=resign)}")

    def gdal_options(self) -> dict[str, str]:
        return {}


@dataclass
class CDSE(Source):
    """Copernicus Data Space: ``s3://eodata/...`` with S3 keys (``CDSE_S3_ACCESS_KEY`` and
    ``CDSE_S3_SECRET_KEY``, or ``~/.netrc`` machine eodata.dataspace.copernicus.eu), or HTTPS
    hrefs with a bearer token from ``CDSE_TOKEN``."""

    endpoint: str = CDSE_S3_ENDPOINT
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    netrc_path: str | None = None

    def search_filter(self, tiles: list[str], max_cloud: float) -> dict[str, Any]:
        return {
            "filter": {
                "op": "and",
                "args": [
                    {
                        "op": "in",
                        "args": [{"property": "grid:code"}, [f"MGRS-{t}" for t in sorted(tiles)]],
                    },
                    {"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_cloud]},
                ],
            },
            "filter_lang": "cql2-json",
        }

    def gdal_options(self) -> dict[str, str]:
        env = self.environ
        keys = (env.get("CDSE_S3_ACCESS_KEY"), env.get("CDSE_S3_SECRET_KEY"))
        if not all(keys):
            keys = netrc_login(self.endpoint, self.netrc_path) or (None, None)
        options = {
            "AWS_S3_ENDPOINT": self.endpoint,
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_HTTPS": "YES",
        }
        if all(keys):
            options["AWS_ACCESS_KEY_ID"], options["AWS_SECRET_ACCESS_KEY"] = keys  # type: ignore[assignment]
        token = env.get("CDSE_TOKEN")
        if token:
            options["GDAL_HTTP_HEADERS"] = f"Authorization: Bearer {token}"
        return options

    def check_credentials(self) -> None:
        """Raise ConfigError naming where keys are looked for when none are found."""
        opts = self.gdal_options()
        if "AWS_ACCESS_KEY_ID" not in opts and "GDAL_HTTP_HEADERS" not in opts:
            raise ConfigError(
                "source cdse: no credentials; export CDSE_S3_ACCESS_KEY and CDSE_S3_SECRET_KEY, "
                f"or add 'machine {self.endpoint} login <key> password <secret>' to ~/.netrc, "
                "or export CDSE_TOKEN"
            )


def make_source(settings: Mapping[str, Any]) -> Source:
    """The source described by the config's ``source`` mapping (``provider`` picks the kind)."""
    provider = settings.get("provider", "local")
    if provider not in PROVIDERS:
        raise ConfigError(f"source.provider {provider!r}: one of {', '.join(PROVIDERS)}")
    collection = settings.get("collection") or PROVIDERS[provider]["collection"]
    if provider == "planetary_computer":
        return PlanetaryComputer(
            name=provider,
            collection=collection,
            token_url=settings.get("token_url") or PC_TOKEN_URL,
            resign_margin_s=float(settings.get("resign_margin_s", 300.0)),
        )
    if provider == "cdse":
        return CDSE(name=provider, collection=collection)
    return Source(name=provider, collection=collection)
