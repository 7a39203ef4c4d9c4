"""Robust transfer: GDAL's HTTP settings, retries with backoff and jitter, secret-free messages.

Two layers of retry compose, and their product bounds the requests per asset:
GDAL retries one HTTP request ``gdal_retries`` times on 429/5xx after ``GDAL_HTTP_RETRY_DELAY``
(cheap, for blips, keeps the open file), and ``retry_read`` retries the whole asset read
``attempts`` times with exponential backoff and jitter (reopens the file, re-signs its URL,
recovers from timeouts and truncated bodies that GDAL does not retry). GDAL's open of a file
that keeps failing asks twice (size probe, then header), so an asset that never answers costs
attempts × 2 × (gdal_retries + 1) requests: 3 × 2 × 2 = 12 with the defaults, measured by
tests/acquire/test_remote.py.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import rasterio
from rasterio.errors import RasterioError
from rasterio.session import Session

from tilepipe.core.errors import InputError

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_STATUS_RE = re.compile(r"HTTP (?:response code|error code)[: ]+(\d{3})")
_TIMEOUT_RE = re.compile(r"timed out|timeout", re.IGNORECASE)
_BROKEN_RE = re.compile(
    r"IReadBlock failed|TIFFRead|Read error|got \d+ bytes, expected|transfer closed|"
    r"Connection reset|Couldn't connect|Recv failure|SSL_read|Empty reply|Read failed",
    re.IGNORECASE,
)
#: S3 refusals, which GDAL reports by their message alone (no HTTP status in the text)
_AUTH_RE = re.compile(
    r"AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|InvalidToken|ExpiredToken|"
    r"Access Key Id|signature we calculated does not match|security token|provided token",
    re.IGNORECASE,
)
_QUERY_RE = re.compile(r"(https?://[^\s'\"?#]+)\?[^\s'\"#]*")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


class TransferError(InputError):
    """An asset could not be fetched after every retry (message names tile, date, asset, cause)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: whole-read attempts, backoff, HTTP timeout and GDAL's own retries."""

    attempts: int = 3
    base_delay_s: float = 2.0
    max_delay_s: float = 60.0
    timeout_s: float = 60.0
    gdal_retries: int = 1

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt + 1``: doubling from the base, ±50 % jitter."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return ceiling * rng.uniform(0.5, 1.5)


def gdal_http_options(policy: RetryPolicy) -> dict[str, str]:
    """GDAL configuration for reading remote COGs: few requests, bounded waits, GDAL retries."""
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listings, no sidecar probes
        "GDAL_HTTP_MAX_RETRY": str(policy.gdal_retries),
        "GDAL_HTTP_RETRY_DELAY": f"{max(policy.base_delay_s / 2, 0.01):g}",
        "GDAL_HTTP_TIMEOUT": f"{policy.timeout_s:g}",
        "GDAL_HTTP_CONNECTTIMEOUT": f"{min(policy.timeout_s, 30.0):g}",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIRANGE": "SERIAL",  # one connection per reading thread: caps hold
        "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
        "VSI_CACHE": "FALSE",
    }


def proxy_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Lower-case copies of proxy variables set only in upper case (libcurl reads
    ``http_proxy`` but never ``HTTP_PROXY``), so GDAL and requests both go through the proxy."""
    out = {}
    for name in PROXY_VARIABLES:
        if name not in environ and name.upper() in environ:
            out[name] = environ[name.upper()]
    return out


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of environment variables that hold credentials (to be scrubbed from messages)."""
    marks = ("TOKEN", "SECRET", "PASSWORD", "SUBSCRIPTION_KEY", "ACCESS_KEY", "SESSION")
    return sorted(
        (v for k, v in environ.items() if any(m in k.upper() for m in marks) and len(v) >= 6),
        key=len,
        reverse=True,
    )


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` without URL query strings (SAS signatures) and without any ``secrets``."""
    text = _QUERY_RE.sub(r"\1?<redacted>", text)
    for secret in secrets if secrets is not None else secret_values(os.environ):
        text = text.replace(secret, "<redacted>")
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs signed URLs and credentials from every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def error_text(exc: BaseException) -> str:
    """The messages of an exception and its causes (GDAL puts the useful one in a cause)."""
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " <- ".join(p for p in parts if p)


def classify(exc: BaseException) -> tuple[str, int | None]:
    """(kind, HTTP status) of a failed read: kind is 'http', 'auth' (an S3 refusal of the
    credentials), 'timeout', 'broken' or 'other'."""
    text = error_text(exc)
    match = _STATUS_RE.search(text)
    if match:
        return "http", int(match.group(1))
    if _AUTH_RE.search(text):
        return "auth", None
    if _TIMEOUT_RE.search(text):
        return "timeout", None
    if _BROKEN_RE.search(text):
        return "broken", None
    return "other", None


def retry_read(
    read: Callable[[str], T],
    url_for: Callable[[bool], str],
    *,
    policy: RetryPolicy,
    where: str,
    can_resign: bool = False,
    options: Mapping[str, str] | None = None,
    session: Session | None = None,
    auth_hint: str = "",
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call ``read(url)`` until it succeeds; ``url_for(resign)`` gives the URL to read.

    Retried: 429/5xx, timeouts and truncated or broken transfers; 403 and unreadable answers
    also when the source can re-sign (the URL is signed afresh first). Anything else, and the
    last failure, raise TransferError naming ``where``, the HTTP status and the attempts made
    (and ``auth_hint`` after a 401/403). ``session`` carries the source's credentials to GDAL.
    """
    rng = rng or random.Random()
    resign = False
    kind, status, text = "other", None, ""
    for attempt in range(1, policy.attempts + 1):
        url = url_for(resign)
        try:
            env = {**gdal_http_options(policy), **(options or {})}
            with rasterio.Env(session=session, **env, CPL_VSIL_CURL_NON_CACHED=url):
                return read(url)
        except RasterioError as exc:
            kind, status = classify(exc)
            text = redact(error_text(exc))
        auth = status == 403 or kind == "auth" or (kind == "other" and can_resign)
        retryable = (
            (kind == "http" and status in RETRYABLE_STATUS)
            or kind in ("timeout", "broken")
            or (auth and can_resign)
        )
        if not retryable or attempt == policy.attempts:
            break
        resign = auth
        wait = 0.0 if resign else policy.delay(attempt, rng)
        log.warning(
            "%sattempt %d/%d failed (%s%s); retrying in %.2f s",
            where,
            attempt,
            policy.attempts,
            f"HTTP {status}" if status else kind,
            ", re-signing" if resign else "",
            wait,
        )
        sleep(wait)
    cause = (
        f"HTTP {status}"
        if status
        else {"timeout": "timed out", "broken": "broken transfer", "auth": "access refused"}.get(
            kind, "unreadable"
        )
    )
    refused = kind == "auth" or status in (401, 403)
    hint = f" ({auth_hint})" if auth_hint and refused else ""
    raise TransferError(f"{where}{cause}{hint} after {attempt} attempt(s): {text}")
