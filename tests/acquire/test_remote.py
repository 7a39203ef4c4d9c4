"""Search and download over real HTTP: pystac-client and rasterio's /vsicurl/ against a loopback
server (127.0.0.1) serving the demo catalog, with faults injected on demand.

Offline stand-ins, said plainly: the server plays Earth Search, Planetary Computer (its SAS
token protocol, with short-lived tokens) and CDSE (its CQL2 search, and its s3:// assets read
through GDAL's /vsis3/ from an S3-style endpoint that checks which key signed each request);
the real services and CDSE's own S3 endpoint were not exercised here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tilepipe.acquire.download import download_scene
from tilepipe.acquire.sources import CDSE, PlanetaryComputer, Source, make_source
from tilepipe.acquire.stac import find_items, read_manifest, select_scenes, write_manifest
from tilepipe.acquire.transfer import RetryPolicy, TransferError
from tilepipe.core.errors import ConfigError, InputError
from tilepipe.demo.stac import flavour_collection

from ..loopback import Fault

FAST = RetryPolicy(attempts=3, base_delay_s=0.01, timeout_s=5, gdal_retries=0)
TILE, DATE = "33UXP", "2022-06-21"


def _manifest(server, tmp_path: Path, source: Source) -> Path:
    items = find_items(
        f"{server.url}/",
        collection="sentinel-2-l2a",
        tiles=["33UXP", "31UFS"],
        start="2022-01-01",
        end="2022-12-31",
        source=source,
        policy=FAST,
    )
    path = tmp_path / "scenes.csv"
    write_manifest(select_scenes(items, max_cloud=100, max_dates_per_tile=None), path)
    return path


def _row(manifest: Path) -> dict:
    return next(r for r in read_manifest(manifest) if (r["tile"], r["date"]) == (TILE, DATE))


def _download(demo, row, out: Path, **kw) -> tuple[Path, Path]:
    out.mkdir(exist_ok=True)
    s2, scl = out / "s2.tif", out / "scl.tif"
    download_scene(row, s2, scl, window=demo["window"], policy=kw.pop("policy", FAST), **kw)
    return s2, scl


def _local_s2(demo, tmp_path: Path) -> np.ndarray:
    row = _row(Path(demo["manifest"]))
    s2, _ = _download(demo, row, tmp_path / "local")
    with rasterio.open(s2) as src:
        return src.read()


def _searches(server) -> list[dict]:
    return [
        json.loads(r[1][len("/search:") :])
        for r in server.stats()["requests"]
        if r[1].startswith("/search:")
    ]


def test_api_search_over_http_finds_every_tile_date_with_unsigned_http_hrefs(
    server, demo, tmp_path
):
    rows = read_manifest(_manifest(server, tmp_path, make_source({})))
    assert sorted((r["tile"], r["date"]) for r in rows) == sorted(
        (t, d) for t in demo["tiles"] for d in demo["dates"]
    )
    for row in rows:
        hrefs = json.loads(row["assets"]).values()
        assert all(h.startswith(f"{server.url}/files/") and "?" not in h for h in hrefs)
    assert _searches(server)[0]["query"]["grid:code"] == {"in": ["MGRS-31UFS", "MGRS-33UXP"]}


def test_a_search_answered_with_502_then_429_is_retried_honouring_retry_after(server, tmp_path):
    server.inject(
        Fault("status", 1, status=502, match="/search"),
        Fault("status", 1, status=429, retry_after=1, match="/search"),
    )
    assert len(read_manifest(_manifest(server, tmp_path, make_source({})))) == 4
    refused = [r[2] for r in server.stats()["requests"] if r[1] == "/search" and r[2] != 200]
    assert refused == [502, 429]


def test_a_search_that_keeps_failing_names_the_catalog_and_the_attempts(server, tmp_path):
    server.inject(Fault("status", 100, status=503, match="/search"))
    with pytest.raises(InputError, match=rf"catalog {server.url}/: search failed after 3 attempt"):
        _manifest(server, tmp_path, make_source({}))


def test_each_source_asks_the_api_with_its_own_tile_filter(server, tmp_path):
    pc = PlanetaryComputer(name="planetary_computer", collection="sentinel-2-l2a")
    cdse = CDSE(name="cdse", collection="sentinel-2-l2a", environ={})
    assert len(read_manifest(_manifest(server, tmp_path, pc))) == 4
    assert _searches(server)[0]["query"]["s2:mgrs_tile"] == {"in": ["31UFS", "33UXP"]}
    server.reset()
    assert len(read_manifest(_manifest(server, tmp_path, cdse))) == 4
    clauses = _searches(server)[0]["filter"]["args"]
    assert clauses[0]["args"] == [{"property": "grid:code"}, ["MGRS-31UFS", "MGRS-33UXP"]]


def test_download_over_http_equals_the_local_download_and_reads_only_the_window(
    server, demo, tmp_path
):
    row = _row(_manifest(server, tmp_path, make_source({})))
    s2, _ = _download(demo, row, tmp_path / "remote")
    with rasterio.open(s2) as src:
        assert np.array_equal(src.read(), _local_s2(demo, tmp_path))
        assert src.tags()["SOURCE_PROVIDER"] == "local"
    gets = [status for method, _, status in server.file_requests() if method == "GET"]
    assert gets and set(gets) == {206}  # range requests only: no asset is fetched whole


def test_earth_search_asset_names_give_the_same_bands_and_harmonisation(server, demo, tmp_path):
    server.settings(
        asset_names={"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "SCL": "scl"}
    )
    source = make_source({"provider": "earth_search", "collection": "sentinel-2-l2a"})
    row = _row(_manifest(server, tmp_path, source))
    assert row["offset_source"] == "raster:bands" and row["boa_offset_dn"] == "1000"
    s2, _ = _download(demo, row, tmp_path / "es", source=source)
    with rasterio.open(s2) as src:
        assert src.descriptions == ("B02", "B03", "B04", "B08")
        assert src.tags()["HARMONISATION_FROM"] == "raster:bands"
        assert np.array_equal(src.read(), _local_s2(demo, tmp_path))


#: provider flavour of the demo's items -> the source that reads them (its tile filter, signing)
FLAVOUR_SOURCE = {
    "earth_search": "earth_search",
    "earth_search_l2a": "earth_search",
    "planetary_computer": "planetary_computer",
    "planetary_computer_2021": "planetary_computer",
    "cdse": "cdse",
}


@pytest.mark.parametrize("flavour", sorted(FLAVOUR_SOURCE))
def test_each_provider_layout_over_http_harmonises_to_the_local_reflectance(
    provider_servers, demo, tmp_path, flavour
):
    server = provider_servers(flavour)
    settings = {"provider": FLAVOUR_SOURCE[flavour], "token_url": f"{server.url}/sas/token"}
    if flavour == "earth_search_l2a":  # the older collection is searched only when named
        settings["collection"] = flavour_collection(flavour)
    source = make_source(settings)  # elsewhere the provider's default collection
    items = find_items(
        f"{server.url}/", tiles=[TILE], start=DATE, end=DATE, source=source, policy=FAST
    )
    (record,) = select_scenes(items, max_cloud=100, max_dates_per_tile=None)
    row = {k: str(v) for k, v in vars(record).items()}
    s2, _ = _download(demo, row, tmp_path / flavour, source=source)
    with rasterio.open(s2) as src:
        assert np.array_equal(src.read(), _local_s2(demo, tmp_path))
        assert src.tags()["HARMONISATION_FROM"] == record.offset_source
        assert src.tags()["HARMONISATION_CHECK"].startswith("consistent")


def test_a_burst_of_502_is_retried_until_the_read_succeeds(server, demo, tmp_path):
    row = _row(_manifest(server, tmp_path, make_source({})))
    server.inject(Fault("status", 2, status=502, match="B04"))
    s2, _ = _download(demo, row, tmp_path / "out")
    assert len(server.file_requests(502)) == 2
    with rasterio.open(s2) as src:
        assert np.array_equal(src.read(), _local_s2(demo, tmp_path))


def test_429_with_retry_after_is_retried(server, demo, tmp_path):
    row = _row(_manifest(server, tmp_path, make_source({})))
    server.inject(Fault("status", 1, status=429, retry_after=1, match="SCL"))
    _download(demo, row, tmp_path / "out")
    assert len(server.file_requests(429)) == 1


def test_a_truncated_body_is_read_again(server, demo, tmp_path):
    row = _row(_manifest(server, tmp_path, make_source({})))
    server.inject(Fault("truncate", 1, match="B08"))
    s2, _ = _download(demo, row, tmp_path / "out")
    assert len(server.file_requests(599)) == 1
    with rasterio.open(s2) as src:
        assert np.array_equal(src.read(), _local_s2(demo, tmp_path))


def test_a_slow_response_times_out_and_is_retried(server, demo, tmp_path):
    row = _row(_manifest(server, tmp_path, make_source({})))
    # the slow answers take 3x the timeout, and the healthy third attempt has a whole second
    server.inject(Fault("slow", 2, delay=3.0, match="B03"))
    policy = RetryPolicy(attempts=3, base_delay_s=0.01, timeout_s=1.0, gdal_retries=0)
    s2, _ = _download(demo, row, tmp_path / "out", policy=policy)
    assert s2.is_file()


def test_gdal_and_tilepipe_retries_compose_to_a_bounded_number_of_requests(server, demo, tmp_path):
    row = _row(_manifest(server, tmp_path, make_source({})))
    server.inject(Fault("status", 1000, status=503, match="B02"))
    policy = RetryPolicy(attempts=3, base_delay_s=0.01, timeout_s=5, gdal_retries=1)
    with pytest.raises(TransferError):
        _download(demo, row, tmp_path / "out", policy=policy)
    # GDAL's open of a file it cannot read asks twice (size probe, then header), each retried
    assert len(server.file_requests(503)) == policy.attempts * 2 * (policy.gdal_retries + 1)


def test_a_permanent_failure_names_tile_date_asset_status_attempts_and_leaves_no_file(
    server, demo, tmp_path
):
    row = _row(_manifest(server, tmp_path, make_source({})))
    server.inject(Fault("status", 1000, status=503, match="B04"))
    out = tmp_path / "out"
    with pytest.raises(TransferError) as err:
        _download(demo, row, out)
    message = str(err.value)
    assert f"tile {TILE}, date {DATE}, file {server.url}/files/" in message
    assert "B04.tif: asset B04: HTTP 503 after 3 attempt(s)" in message
    assert list(out.iterdir()) == []


def test_a_missing_asset_is_not_retried(server, demo, tmp_path):
    row = dict(_row(_manifest(server, tmp_path, make_source({}))))
    hrefs = json.loads(row["assets"])
    hrefs["B02"] = hrefs["B02"].replace("B02.tif", "B99.tif")
    row["assets"] = json.dumps(hrefs)
    with pytest.raises(TransferError, match="HTTP 404 after 1 attempt"):
        _download(demo, row, tmp_path / "out")


@pytest.mark.parametrize("connections", [1, 3])
def test_the_connection_cap_holds_while_assets_are_read_in_parallel(
    server, demo, tmp_path, connections
):
    row = _row(_manifest(server, tmp_path, make_source({})))
    server.reset()
    # each read waits until `connections` reads are in flight: a cap below it would show as
    # fewer, a cap not held as more, whatever the load on this machine
    server.settings(gather=connections)
    _download(demo, row, tmp_path / "out", connections=connections)
    assert server.stats()["max_in_flight"] == connections


def _pc(server, **kw) -> PlanetaryComputer:
    return PlanetaryComputer(
        name="planetary_computer",
        collection="sentinel-2-l2a",
        token_url=f"{server.url}/sas/token",
        environ={},
        **kw,
    )


def test_planetary_computer_signs_each_read_and_re_signs_after_a_403(server, demo, tmp_path):
    source = _pc(server)
    row = _row(_manifest(server, tmp_path, source))
    server.settings(require_token=True)
    _download(demo, row, tmp_path / "first", source=source)
    assert server.stats()["token_requests"] == 1 and not server.file_requests(403)
    server.expire_tokens()  # every token issued so far now answers 403
    s2, _ = _download(demo, row, tmp_path / "second", source=source, connections=1)
    assert server.stats()["token_requests"] == 2
    # one refused open (GDAL asks twice), then a fresh signature and no more refusals
    assert len(server.file_requests(403)) == 2
    with rasterio.open(s2) as src:
        assert np.array_equal(src.read(), _local_s2(demo, tmp_path))


def test_a_token_close_to_its_expiry_is_renewed_before_reading(server):
    server.settings(token_lifetime_s=60)
    source = _pc(server, resign_margin_s=300)  # 60 s left is inside the 300 s margin
    first, second = source.token(), source.token()
    assert first != second and server.stats()["token_requests"] == 2
    server.settings(token_lifetime_s=3600)
    third, fourth = source.token(), source.token()
    assert third == fourth and server.stats()["token_requests"] == 3


def test_signed_urls_stay_out_of_the_manifest(server, tmp_path):
    manifest = _manifest(server, tmp_path, _pc(server))
    assert "sig=" not in manifest.read_text()


# -- CDSE: s3:// assets read through GDAL's /vsis3/ with keys, against the S3-style server ------
CDSE_KEY, CDSE_SECRET = "AKLOOPBACKCDSE", "cdse-secret-not-for-logs-4f1d"


def _cdse_server(provider_servers, **settings):
    """The CDSE-shaped catalog served with s3://eodata/ hrefs, accepting only ``CDSE_KEY``."""
    server = provider_servers("cdse")
    server.settings(s3_bucket="eodata", s3_keys=[CDSE_KEY], **settings)
    return server


def _cdse(server, environ: dict[str, str], tmp_path: Path) -> CDSE:
    """The CDSE source pointed at the loopback server's S3 endpoint (plain HTTP)."""
    netrc = str(tmp_path / "no-netrc")  # never the user's own ~/.netrc
    return CDSE(
        name="cdse",
        collection="sentinel-2-l2a",
        endpoint_url=server.url,
        environ=environ,
        netrc_path=netrc,
    )


def _cdse_row(server, source: CDSE) -> dict:
    items = find_items(
        f"{server.url}/", tiles=[TILE], start=DATE, end=DATE, source=source, policy=FAST
    )
    (record,) = select_scenes(items, max_cloud=100, max_dates_per_tile=None)
    return {k: str(v) for k, v in vars(record).items()}


KEYS = {"CDSE_S3_ACCESS_KEY": CDSE_KEY, "CDSE_S3_SECRET_KEY": CDSE_SECRET}


def test_cdse_search_then_download_reads_s3_assets_signed_with_the_configured_keys(
    provider_servers, demo, tmp_path
):
    server = _cdse_server(provider_servers)
    source = _cdse(server, KEYS, tmp_path)
    row = _cdse_row(server, source)
    assert all(h.startswith("s3://eodata/") for h in json.loads(row["assets"]).values())
    s2, _ = _download(demo, row, tmp_path / "cdse", source=source)
    with rasterio.open(s2) as src:
        assert np.array_equal(src.read(), _local_s2(demo, tmp_path))
        assert src.tags()["SOURCE_PROVIDER"] == "cdse"
    s3 = server.file_requests(prefix="/eodata/")
    assert s3 and {status for _, _, status in s3} == {206}  # every read signed with CDSE_KEY


def test_cdse_with_a_wrong_key_names_tile_date_asset_and_the_credentials(
    provider_servers, demo, tmp_path
):
    server = _cdse_server(provider_servers)
    wrong = _cdse(server, {**KEYS, "CDSE_S3_ACCESS_KEY": "AKSOMEONEELSE"}, tmp_path)
    row = _cdse_row(server, wrong)
    out = tmp_path / "out"
    with pytest.raises(TransferError) as err:
        _download(demo, row, out, source=wrong, connections=1)
    message = str(err.value)
    assert f"tile {TILE}, date {DATE}, file s3://eodata/" in message
    assert "asset SCL: access refused" in message and "credentials" in message
    assert CDSE_SECRET not in message and list(out.iterdir()) == []
    assert server.file_requests(403, prefix="/eodata/")  # it did reach the server, and was refused


def test_cdse_without_keys_fails_before_any_request(provider_servers, demo, tmp_path):
    server = _cdse_server(provider_servers)
    source = _cdse(server, {}, tmp_path)
    row = _cdse_row(server, source)  # the catalog is public: searching needs no keys
    with pytest.raises(ConfigError, match=rf"tile {TILE}, date {DATE}, .*no S3 credentials"):
        _download(demo, row, tmp_path / "out", source=source)
    assert server.file_requests(prefix="/eodata/") == []


def test_cdse_keys_from_netrc_reach_gdal(provider_servers, demo, tmp_path):
    server = _cdse_server(provider_servers)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {CDSE_KEY} password {CDSE_SECRET}\n")
    netrc.chmod(0o600)
    source = _cdse(server, {}, tmp_path)
    source.netrc_path = str(netrc)
    s2, _ = _download(demo, _cdse_row(server, source), tmp_path / "out", source=source)
    assert s2.is_file() and not server.file_requests(403, prefix="/eodata/")


def test_cdse_session_token_of_temporary_keys_reaches_gdal(provider_servers, demo, tmp_path):
    server = _cdse_server(provider_servers, s3_token="FQoGZXIvYXdzEtemporary")
    without = _cdse(server, KEYS, tmp_path)
    row = _cdse_row(server, without)
    with pytest.raises(TransferError, match="access refused"):
        _download(demo, row, tmp_path / "without", source=without, connections=1)
    token = {**KEYS, "CDSE_S3_SESSION_TOKEN": "FQoGZXIvYXdzEtemporary"}
    s2, _ = _download(demo, row, tmp_path / "with", source=_cdse(server, token, tmp_path))
    assert s2.is_file()
