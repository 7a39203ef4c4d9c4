"""Sentinel-2 L2A sources behind one interface: how to search them and how to read their assets.

``local`` (a static catalog such as the demo's, or any STAC API with public assets),
``earth_search`` (Element84, collection ``sentinel-2-c1-l2a``, public COGs),
``planetary_computer`` (SAS tokens per collection, signed right before each read, re-signed on
403 or near ``msft:expiry``) and ``cdse`` (Copernicus Data Space: ``s3://eodata`` through
GDAL's S3 driver with keys from the environment or ``~/.netrc``, at most 4 connections).
Credentials come only from the environment or ``~/.netrc`` and reach GDAL through a rasterio
session (``Source.session``), the one way rasterio lets S3 keys through; hrefs stay unsigned
everywhere but in the string handed to GDAL for one read.
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
from urllib.parse import urlsplit

from rasterio.session import Session

from tilepipe.core.errors import ConfigError, InputError

log = logging.getLogger(__name__)

PC_TOKEN_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"
CDSE_S3_ENDPOINT = "https://eodata.dataspace.copernicus.eu"

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
    auth_hint: str = field(default="", init=False)  # said after a 401/403: what to check

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
        """GDAL configuration this source needs besides the HTTP settings (never secrets)."""
        return {"AWS_NO_SIGN_REQUEST": "YES"}

    def session(self, href: str = "") -> Session | None:
        """The rasterio session carrying the credentials for reading ``href`` (None: none)."""
        return None


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


class KeySession(Session):
    """S3 keys handed to GDAL the way rasterio allows (a session, not ``Env`` options).

    rasterio refuses ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` as ``Env`` options, and its
    own ``AWSSession`` needs boto3 for keys (boto3 is not a dependency); this session only hands
    the keys it was given to GDAL when the environment is entered.
    """

    def __init__(self, options: Mapping[str, str]) -> None:
        self._options = dict(options)
        self.credentials = {k.lower(): "<set>" for k in self._options}  # never the values

    @classmethod
    def hascreds(cls, config: Mapping[str, Any]) -> bool:
        """True when GDAL's config already holds S3 keys (rasterio asks before re-keying)."""
        return "AWS_ACCESS_KEY_ID" in config and "AWS_SECRET_ACCESS_KEY" in config

    def get_credential_options(self) -> dict[str, str]:
        """The keys as GDAL configuration options."""
        return dict(self._options)

    def __repr__(self) -> str:
        return f"KeySession({sorted(self._options)})"  # names the options, never their values


def _endpoint(url: str) -> tuple[str, bool]:
    """(host[:port], https) of an S3 endpoint given as ``https://host``, ``http://host:port``
    or a bare host (HTTPS)."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"source.endpoint_url {url!r}: expected https://HOST[:PORT]")
    return parts.netloc, parts.scheme == "https"


@dataclass
class CDSE(Source):
    """Copernicus Data Space: ``s3://eodata/...`` with S3 keys (``CDSE_S3_ACCESS_KEY`` and
    ``CDSE_S3_SECRET_KEY``, optionally ``CDSE_S3_SESSION_TOKEN``, or ``~/.netrc`` machine
    eodata.dataspace.copernicus.eu), or HTTPS hrefs with a bearer token from ``CDSE_TOKEN``."""

    endpoint_url: str = CDSE_S3_ENDPOINT
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    netrc_path: str | None = None
    auth_hint: str = field(
        default="check the credentials: CDSE_S3_ACCESS_KEY and CDSE_S3_SECRET_KEY "
        "(or ~/.netrc), CDSE_S3_SESSION_TOKEN where the keys are temporary, or CDSE_TOKEN",
        init=False,
    )

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
        """Endpoint and addressing of GDAL's S3 driver (no secrets: those go in ``session``)."""
        host, https = _endpoint(self.endpoint_url)
        return {
            "AWS_S3_ENDPOINT": host,
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_HTTPS": "YES" if https else "NO",
        }

    def s3_keys(self) -> dict[str, str]:
        """The S3 keys found (environment first, then ``~/.netrc``) as GDAL options, or {}."""
        env = self.environ
        keys = (env.get("CDSE_S3_ACCESS_KEY"), env.get("CDSE_S3_SECRET_KEY"))
        if not all(keys):
            keys = netrc_login(self._host(), self.netrc_path) or (None, None)
        if not all(keys):
            return {}
        options = {"AWS_ACCESS_KEY_ID": str(keys[0]), "AWS_SECRET_ACCESS_KEY": str(keys[1])}
        if env.get("CDSE_S3_SESSION_TOKEN"):
            options["AWS_SESSION_TOKEN"] = env["CDSE_S3_SESSION_TOKEN"]
        return options

    def session(self, href: str = "s3://") -> Session | None:
        """The credentials for reading ``href`` as a rasterio session: S3 keys for s3:// hrefs
        (ConfigError naming where they are looked for when there are none, raised before any
        request), the bearer ``CDSE_TOKEN`` for HTTPS ones."""
        if href.startswith("s3://"):
            options = self.s3_keys()
            if not options:
                raise ConfigError(
                    "source cdse: no S3 credentials for s3:// assets; export CDSE_S3_ACCESS_KEY "
                    f"and CDSE_S3_SECRET_KEY, or add 'machine {self._host()} login <key> "
                    "password <secret>' to ~/.netrc (CDSE_TOKEN serves HTTPS hrefs only)"
                )
            return KeySession(options)
        token = self.environ.get("CDSE_TOKEN")
        if token and href.startswith("https://"):
            return KeySession({"GDAL_HTTP_HEADERS": f"Authorization: Bearer {token}"})
        return None

    def _host(self) -> str:
        """The endpoint's host name (the ``~/.netrc`` machine of the keys)."""
        return _endpoint(self.endpoint_url)[0].split(":")[0]


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
        endpoint = settings.get("endpoint_url") or CDSE_S3_ENDPOINT
        return CDSE(name=provider, collection=collection, endpoint_url=endpoint)
    return Source(name=provider, collection=collection)
