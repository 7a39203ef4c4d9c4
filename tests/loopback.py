"""A loopback HTTP server (127.0.0.1) standing in for a Sentinel-2 source, with faults on demand.

The server runs in its own process (``python tests/loopback.py ROOT`` prints its URL): GDAL
holds the GIL while it opens a file, so a server thread in the test process could deadlock with
the reads it serves. Tests steer it through ``/_ctl/`` endpoints, wrapped by ``Loopback``.

It serves a static STAC catalog's files with HTTP Range support under ``/files/``, a minimal
STAC API (``/``, ``/conformance``, ``/collections``, ``/search`` GET and POST) whose items point
at those files, and a Planetary-Computer-like SAS token endpoint (``/sas/token/{collection}``).
The catalog may be one the demo wrote in a provider's shape (``generate_campaign(provider=...)``:
Earth Search's ``blue``/``scl`` keys and ``earthsearch:boa_offset_applied``, CDSE's ``B02_10m``
keys, ``raster:offset`` and ``processing:version``, ...), so searches and reads meet each
service's layout; with ``s3_bucket`` set, asset hrefs are ``s3://{bucket}/...`` and objects are
served path-style at ``/{bucket}/...`` as GDAL's /vsis3/ asks for them, only to requests signed
(AWS Signature V4) with one of ``s3_keys``, so a test proves the keys reached GDAL. With
``published=True`` it serves a folder of real items as their services
published them (hrefs untouched), for search only.
Tests drive it like a flaky real service: bursts of 5xx, 429 with Retry-After, slow responses,
truncated bodies and expiring tokens; it counts requests and the most requests it served at
once (the judge of a concurrency cap). A request line with an absolute URI is served as a
forward proxy would, and counted, so proxy settings can be shown to take effect. Extra
directories (``name=DIR`` arguments) are served the same way under ``/mirror/{name}/``: a
TESSERA mirror in geotessera's layout, AEF COGs with their ``aef_index.parquet``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"
CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    ITEM_SEARCH,
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/item-search#filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]


@dataclass
class Fault:
    """``count`` responses to file requests whose path contains ``match`` go wrong this way."""

    kind: str  # "status", "slow", "truncate", "corrupt" (one byte flipped, the true ETag kept)
    count: int
    status: int = 502
    retry_after: float | None = None
    delay: float = 0.0
    match: str = ""


@dataclass
class ServerState:
    """What the server was asked to do and what it saw (shared by the handler threads)."""

    root: Path
    collection: str
    items: list[dict]
    mounts: dict[str, Path] = field(default_factory=dict)  # /mirror/{name}/ -> directory
    faults: list[Fault] = field(default_factory=list)
    require_token: bool = False
    token_lifetime_s: float = 3600.0
    tokens: dict[str, datetime] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    asset_names: dict[str, str] = field(default_factory=dict)  # rename assets (Earth Search)
    published: bool = False  # items as their services published them: hrefs are not rebased
    s3_bucket: str = ""  # set: asset hrefs are s3://{bucket}/..., served S3-style at /{bucket}/
    s3_keys: list[str] = field(default_factory=list)  # access key ids an S3 request may sign with
    s3_token: str = ""  # set: S3 requests must carry it as X-Amz-Security-Token
    bytes_sent: int = 0
    slow_all_s: float = 0.0
    gather: int = 0  # file requests wait (5 s at most) until this many have been in flight at once
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status)
    proxied: list[str] = field(default_factory=list)
    token_requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, path: str, method: str) -> Fault | None:
        """The next fault that applies to ``path``, used up by one (HEAD has no body to cut)."""
        with self.lock:
            for fault in self.faults:
                if method == "HEAD" and fault.kind in ("truncate", "corrupt"):
                    continue
                if fault.count > 0 and fault.match in path:
                    fault.count -= 1
                    return fault
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- plumbing ---------------------------------------------------------------------------
    def _target(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        if parts.scheme:  # absolute URI: we are being used as a proxy
            with self.state.lock:
                self.state.proxied.append(self.path)
        return parts.path, parse_qs(parts.query)

    @property
    def state(self) -> ServerState:
        return self.server.state

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            if ctype == "image/tiff":
                with self.state.lock:
                    self.state.bytes_sent += len(body)
        self._record(status)

    def _json(self, obj: object, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _record(self, status: int) -> None:
        with self.state.lock:
            self.state.requests.append((self.command, urlsplit(self.path).path, status))

    def _dispatch(self) -> None:
        if self.path.startswith("/_ctl/"):
            self._control(self.path[len("/_ctl/") :])
            return
        with self.state.lock:
            self.state.in_flight += 1
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
        try:
            path, query = self._target()
            if path.startswith("/files/"):
                self._file(path[len("/files/") :], query)
            elif path.startswith("/mirror/"):
                name, _, rel = path[len("/mirror/") :].partition("/")
                if name in self.state.mounts:
                    self._file(rel, query, self.state.mounts[name])
                else:
                    self._send(404, b"no such mirror", "text/plain")
            elif self.state.s3_bucket and path.startswith(f"/{self.state.s3_bucket}/"):
                self._s3_object(path[len(self.state.s3_bucket) + 2 :], query)
            elif path.startswith("/sas/token/"):
                self._token(path.rsplit("/", 1)[-1])
            else:
                self._api(path, query)
        finally:
            with self.state.lock:
                self.state.in_flight -= 1

    do_GET = do_HEAD = do_POST = _dispatch

    # -- control (tests only) ---------------------------------------------------------------
    def _control(self, action: str) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"null")
        state = self.state
        with state.lock:
            if action == "faults":
                state.faults.extend(Fault(**f) for f in body)
            elif action == "settings":
                for key, value in body.items():
                    setattr(state, key, value)
            elif action == "expire":
                state.tokens.clear()
            elif action == "reset":
                state.faults.clear()
                state.requests.clear()
                state.proxied.clear()
                state.tokens.clear()
                state.issued.clear()
                state.asset_names = {}
                state.bytes_sent = 0
                state.require_token, state.slow_all_s, state.gather = False, 0.0, 0
                state.token_lifetime_s = 3600.0
                state.s3_bucket, state.s3_keys, state.s3_token = "", [], ""
                state.token_requests = state.max_in_flight = 0
            stats = {
                "requests": state.requests,
                "proxied": state.proxied,
                "token_requests": state.token_requests,
                "tokens": sorted(state.tokens),
                "issued": list(state.issued),
                "bytes_sent": state.bytes_sent,
                "max_in_flight": state.max_in_flight,
                "in_flight": state.in_flight,
            }
        body_out = json.dumps(stats).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body_out)))
        self.end_headers()
        self.wfile.write(body_out)

    # -- STAC API ---------------------------------------------------------------------------
    def _base(self) -> str:
        return f"http://{self.headers.get('Host', '127.0.0.1')}"

    def _api(self, path: str, query: dict[str, list[str]]) -> None:
        base = self._base()
        if path in ("", "/"):
            self._json(
                {
                    "type": "Catalog",
                    "id": "loopback",
                    "stac_version": "1.0.0",
                    "description": "tilepipe test server",
                    "conformsTo": CONFORMS,
                    "links": [
                        {"rel": "self", "href": f"{base}/", "type": "application/json"},
                        {"rel": "root", "href": f"{base}/", "type": "application/json"},
                        {"rel": "conformance", "href": f"{base}/conformance"},
                        {"rel": "data", "href": f"{base}/collections"},
                        {"rel": "search", "href": f"{base}/search", "method": "GET"},
                        {"rel": "search", "href": f"{base}/search", "method": "POST"},
                    ],
                }
            )
        elif path == "/conformance":
            self._json({"conformsTo": CONFORMS})
        elif path == "/collections":
            ids = _collections(self.state)
            self._json({"collections": [self._collection(base, c) for c in ids], "links": []})
        elif path.startswith("/collections/") and path.split("/")[2] in _collections(self.state):
            self._json(self._collection(base, path.split("/")[2]))
        elif path == "/search":
            self._search(base, query)
        else:
            self._json({"code": "NotFound", "description": path}, 404)

    def _collection(self, base: str, collection: str) -> dict:
        return {
            "type": "Collection",
            "id": collection,
            "stac_version": "1.0.0",
            "description": "loopback collection",
            "license": "CC0-1.0",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[None, None]]},
            },
            "links": [{"rel": "self", "href": f"{base}/collections/{collection}"}],
        }

    def _search(self, base: str, query: dict[str, list[str]]) -> None:
        if self.command == "POST":
            length = int(self.headers.get("Content-Length", 0))
            params = json.loads(self.rfile.read(length) or b"{}")
        else:
            params = {k: v[0] for k, v in query.items()}
            for key in ("query", "filter"):
                if key in params:
                    params[key] = json.loads(params[key])
            if "collections" in params:
                params["collections"] = params["collections"].split(",")
        fault = self.state.take_fault("/search", self.command)
        if fault and fault.kind == "status":
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after else {}
            self._send(fault.status, b"injected fault", "text/plain", headers)
            return
        with self.state.lock:
            self.state.requests.append((self.command, "/search:" + json.dumps(params), 200))
        features = [
            _rebase(item, base, self.state.asset_names, self.state.published, self.state.s3_bucket)
            for item in self.state.items
            if _matches(item, params)
        ]
        self._json({"type": "FeatureCollection", "features": features, "links": []})

    # -- SAS tokens -------------------------------------------------------------------------
    def _token(self, collection: str) -> None:
        token = f"st=x&se=y&sig={secrets.token_hex(12)}"
        expiry = datetime.now(timezone.utc) + timedelta(seconds=self.state.token_lifetime_s)
        with self.state.lock:
            self.state.tokens[token] = expiry
            self.state.issued.append(token)
            self.state.token_requests += 1
        self._json({"msft:expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"), "token": token})

    def _token_ok(self, query: dict[str, list[str]]) -> bool:
        if not self.state.require_token:
            return True
        token = "&".join(f"{k}={v[0]}" for k, v in query.items())
        expiry = self.state.tokens.get(token)
        return expiry is not None and expiry > datetime.now(timezone.utc)

    # -- S3 (path-style, as GDAL's /vsis3/ asks with AWS_VIRTUAL_HOSTING=FALSE) -------------
    def _s3_refusal(self) -> tuple[str, str] | None:
        """(S3 error code, message) when the request is not signed with an accepted key (and,
        where one is required, the session token); None when it is."""
        auth = self.headers.get("Authorization", "")
        match = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/", auth)
        if not match:
            return "AccessDenied", "request not signed with AWS Signature Version 4"
        if match.group(1) not in self.state.s3_keys:
            return "InvalidAccessKeyId", "The Access Key Id you provided does not exist"
        if self.state.s3_token and self.headers.get("X-Amz-Security-Token") != self.state.s3_token:
            return "InvalidToken", "The provided token is malformed or otherwise invalid"
        return None

    def _s3_object(self, key: str, query: dict[str, list[str]]) -> None:
        """An object of the bucket (a file under the root), refused 403 unless signed right."""
        refusal = self._s3_refusal()
        if refusal:
            body = f"<Error><Code>{refusal[0]}</Code><Message>{refusal[1]}</Message></Error>"
            self._send(403, body.encode(), "application/xml")
            return
        self._file(key, query)

    # -- files with Range -------------------------------------------------------------------
    def _file(self, rel: str, query: dict[str, list[str]], mount: Path | None = None) -> None:
        """A file of the catalog (signed when tokens are required) or of a mirror (public)."""
        root = self.state.root if mount is None else mount
        target = (root / rel).resolve()
        if root not in target.parents or not target.is_file():
            self._send(404, b"not found", "text/plain")
            return
        if mount is None and not self._token_ok(query):
            self._send(403, b"AuthenticationFailed: signature expired", "text/plain")
            return
        if self.state.slow_all_s:
            time.sleep(self.state.slow_all_s)
        deadline = time.monotonic() + 5
        while self.state.max_in_flight < self.state.gather and time.monotonic() < deadline:
            time.sleep(0.005)  # concurrency made certain, not left to the scheduler
        fault = self.state.take_fault(rel, self.command)
        if fault and fault.kind == "status":
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after else {}
            self._send(fault.status, b"injected fault", "text/plain", headers)
            return
        if fault and fault.kind == "slow":
            time.sleep(fault.delay)
        data = target.read_bytes()
        # an object store's ETag: the MD5 of a single-part object (S3, Source Cooperative)
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        status, body, headers = 200, data, {"Accept-Ranges": "bytes", "ETag": etag}
        match = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2) or len(data) - 1), len(data) - 1)
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        if fault and fault.kind == "corrupt" and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]  # damaged on the way, same length
        if fault and fault.kind == "truncate" and self.command != "HEAD":
            self.send_response(status)
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body[: max(1, len(body) // 3)])
            self.wfile.flush()
            self.close_connection = True
            self._record(599)
            return
        self._send(status, body, "image/tiff", headers)


def _matches(item: dict, params: dict) -> bool:
    """The subset of STAC item-search filters tilepipe sends: collections, datetime, query,
    a CQL2-JSON ``and`` of ``in``/``=``/``<=`` comparisons."""
    props = item["properties"]
    if params.get("collections") and item.get("collection") not in params["collections"]:
        return False
    if params.get("datetime"):
        lo, _, hi = params["datetime"].partition("/")
        if not lo[:10] <= props["datetime"][:10] <= (hi or lo)[:10]:
            return False
    for name, ops in (params.get("query") or {}).items():
        value = props.get(name)
        for op, arg in ops.items():
            ok = {
                "in": lambda v, a: v in a,
                "eq": lambda v, a: v == a,
                "lte": lambda v, a: v is not None and v <= a,
                "lt": lambda v, a: v is not None and v < a,
            }[op](value, arg)
            if not ok:
                return False
    flt = params.get("filter")
    if flt:
        clauses = flt["args"] if flt.get("op") == "and" else [flt]
        for clause in clauses:
            (prop, arg) = clause["args"]
            value = props.get(prop["property"])
            ok = {
                "in": lambda v, a: v in a,
                "=": lambda v, a: v == a,
                "<=": lambda v, a: v is not None and v <= a,
            }[clause["op"]](value, arg)
            if not ok:
                return False
    return True


def _collections(state: ServerState) -> list[str]:
    """The collections the server answers for: its own, and those of the items it serves."""
    return sorted({state.collection, *(item.get("collection", "") for item in state.items)})


def _rebase(
    item: dict, base: str, names: dict[str, str], published: bool = False, bucket: str = ""
) -> dict:
    """The item with its asset hrefs pointing at this server's /files/ (or, with ``bucket``,
    at ``s3://{bucket}/``), assets renamed; or, ``published``, the item as its service
    published it (hrefs and links)."""
    out = json.loads(json.dumps(item))
    if published:
        return out
    out["assets"] = {names.get(k, k): v for k, v in out["assets"].items()}
    for asset in out["assets"].values():
        prefix = f"s3://{bucket}" if bucket else f"{base}/files"
        asset["href"] = f"{prefix}/{asset['href']}"
    out["links"] = []
    return out


def load_published(folder: Path) -> list[dict]:
    """Every STAC item (a JSON Feature) in ``folder``, exactly as stored."""
    items = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("type") == "Feature":
            items.append(data)
    return items


def load_items(root: Path, collection: str) -> list[dict]:
    """Every item of a static catalog under ``root``, asset hrefs relative to ``root``."""
    items = []
    for path in sorted((root / collection).glob("*/*.json")):
        item = json.loads(path.read_text())
        item["collection"] = collection
        for asset in item["assets"].values():
            asset["href"] = str((path.parent / asset["href"]).resolve().relative_to(root))
        items.append(item)
    return items


class LoopbackServer(ThreadingHTTPServer):
    """The server bound to 127.0.0.1 on a free port."""

    daemon_threads = True

    def __init__(self, state: ServerState, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up (timeout, truncation) is expected here, not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Loopback:
    """A running loopback server process and the test's handle on it."""

    def __init__(
        self,
        root: Path,
        collection: str = "sentinel-2-l2a",
        mounts: dict | None = None,
        *,
        published: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        extra = [f"{name}={Path(d).resolve()}" for name, d in (mounts or {}).items()]
        extra += ["published"] if published else []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.root), collection, *extra],
            stdin=subprocess.PIPE,  # closed when this process ends: the server then stops
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("http://"):
            self.proc.kill()
            raise RuntimeError(f"loopback server did not start: {line!r}")
        self.url = line.strip()

    def file_url(self, rel: str) -> str:
        """The URL the server serves ``rel`` (relative to its root) at."""
        return f"{self.url}/files/{rel}"

    def mirror_url(self, name: str) -> str:
        """The base URL of the directory mounted as ``name``."""
        return f"{self.url}/mirror/{name}"

    def _ctl(self, action: str, body: object = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/_ctl/{action}", data=json.dumps(body).encode(), method="POST"
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return json.loads(response.read())

    def inject(self, *faults: Fault) -> None:
        """Queue faults for the next matching file requests."""
        self._ctl("faults", [asdict(f) for f in faults])

    def settings(self, **values: object) -> None:
        """Set ``require_token``, ``token_lifetime_s``, ``slow_all_s``, ``asset_names``, or
        ``s3_bucket``, ``s3_keys`` and ``s3_token`` (serve the assets S3-style)."""
        self._ctl("settings", values)

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (403) until the client signs again."""
        self._ctl("expire")

    def reset(self) -> None:
        """Forget faults, counters, tokens and settings (between tests sharing one server),
        once the requests still being served (a slow response a client gave up on) are done."""
        deadline = time.monotonic() + 10
        while self._ctl("stats")["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        self._ctl("reset")

    def stats(self) -> dict:
        """Requests seen ``[method, path, status]``, proxied URIs, tokens, max in flight."""
        return self._ctl("stats")

    def file_requests(self, status: int | None = None, prefix: str = "/files/") -> list[list]:
        """File requests seen (under ``prefix``: ``/eodata/`` for S3-style ones), optionally
        only those answered with ``status``."""
        return [
            r
            for r in self.stats()["requests"]
            if r[1].startswith(prefix) and (status is None or r[2] == status)
        ]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def main(argv: list[str]) -> None:
    """Serve the static catalog at ``argv[0]`` (or, with ``published`` as ``argv[2]``, the items
    in that folder as published) until killed; print the URL first."""
    root = Path(argv[0]).resolve()
    collection = argv[1] if len(argv) > 1 else "sentinel-2-l2a"
    published = "published" in argv[2:]
    mounts = {n: Path(d).resolve() for n, _, d in (a.partition("=") for a in argv[2:] if "=" in a)}
    items = load_published(root) if published else load_items(root, collection)
    state = ServerState(
        root=root, collection=collection, items=items, mounts=mounts, published=published
    )
    server = LoopbackServer(state)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # returns when the test process closes the pipe or dies
    server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
