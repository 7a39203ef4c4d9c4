"""Embedding sources as local directories or HTTP(S) mirrors: joining paths, fetching, verifying.

A source is a directory or a base URL laid out the same way (geotessera's
``https://dl2.geotessera.org/v1`` for TESSERA, a folder holding ``aef_index.parquet`` for AEF).
Remote files are fetched once into a local cache and verified there (size, SHA-256 where the
registry gives one, and the server's MD5 ETag as they arrive), so a mirror fetched on a login
node serves compute nodes offline.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from tilepipe.core.checksum import sha256_file
from tilepipe.core.errors import InputError, context
from tilepipe.core.raster import atomic_output

RETRIES = 3  # tries of one download (connection errors and 5xx/429 only)
TIMEOUT_S = 60.0


def is_url(source: str | os.PathLike) -> bool:
    """Whether ``source`` is an http(s) URL rather than a local path."""
    return str(source).startswith(("http://", "https://"))


def join(source: str | os.PathLike, rel: str) -> str:
    """``rel`` (a POSIX path) under ``source``, a URL or a directory."""
    if is_url(source):
        return f"{str(source).rstrip('/')}/{quote(rel)}"
    return str(Path(source) / rel)


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return isinstance(
        exc, (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)
    )


def download(url: str, dest: Path, *, retries: int = RETRIES, timeout: float = TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` atomically, retrying transient failures; InputError if not."""
    for attempt in range(1, retries + 1):
        try:
            with (
                urllib.request.urlopen(url, timeout=timeout) as response,
                atomic_output(dest) as tmp,
            ):
                md5 = hashlib.md5()
                with open(tmp, "wb") as fh:
                    while chunk := response.read(1 << 20):
                        md5.update(chunk)
                        fh.write(chunk)
                expected = response.headers.get("Content-Length")
                if expected is not None and tmp.stat().st_size != int(expected):
                    raise ConnectionError(
                        f"truncated: {tmp.stat().st_size} of {expected} bytes received"
                    )
                check_etag(response.headers.get("ETag"), md5.hexdigest())
            return dest
        except Exception as exc:
            if attempt < retries and _retryable(exc):
                time.sleep(0.2 * 2**attempt)
                continue
            raise InputError(f"{context(path=url)}download failed: {exc}") from exc
    raise AssertionError("unreachable")


class ChecksumError(ConnectionError):
    """The bytes received differ from the object's MD5 ETag: retried, then a named error."""


def check_etag(etag: str | None, md5: str) -> None:
    """Raise ChecksumError when ``etag`` is a plain MD5 (an object store's single-part ETag,
    which geotessera >= 0.8 checks too: ``registry.py``, ``download_file_to_temp``) that differs
    from the received bytes' ``md5``. Multipart (``…-N``) and weak ETags say nothing of it."""
    tag = (etag or "").strip().strip('"').lower()
    if re.fullmatch(r"[0-9a-f]{32}", tag) and tag != md5:
        raise ChecksumError(f"checksum mismatch: MD5 {md5} of the bytes received != ETag {tag}")


def verify(path: Path, size: int | None, sha256: str | None, what: str) -> None:
    """Raise InputError naming ``what`` unless ``path`` has the listed size and SHA-256."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise InputError(
            f"{what}: size mismatch (registry {size} bytes, file {actual}): truncated or replaced"
        )
    if sha256:
        digest = sha256_file(path)
        if digest != sha256.lower():
            raise InputError(f"{what}: sha256 mismatch (registry {sha256}, file {digest})")


def _verified(path: Path, size: int | None, sha256: str | None) -> bool:
    try:
        verify(path, size, sha256, "")
    except InputError:
        return False
    return True


def local_copy(
    source: str | os.PathLike,
    rel: str,
    cache: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    what: str = "",
) -> Path:
    """A verified local path of ``rel``: in the source directory, or fetched into ``cache``.

    A cached copy that still matches the listing (any cached copy of an unlisted file, such as
    a registry: delete the cache to refresh it) is reused, so a second build makes no request.
    """
    what = what or f"{context(path=join(source, rel))}".rstrip(": ")
    if not is_url(source):
        path = Path(source) / rel
        if not path.is_file():
            raise InputError(f"{what} is missing")
        verify(path, size, sha256, what)
        return path
    dest = cache / rel
    if dest.is_file() and _verified(dest, size, sha256):
        return dest
    try:
        download(join(source, rel), dest)
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from exc
    verify(dest, size, sha256, what)
    return dest
