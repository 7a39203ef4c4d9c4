"""Each source says how its assets are opened and where its credentials come from (offline).

CDSE's S3 endpoint itself is not reachable here: what is checked is the GDAL configuration
(/vsis3/ path, endpoint, keys from the environment or ~/.netrc in a rasterio session) that the
real reads use; tests/acquire/test_remote.py reads through it from an S3-style loopback server.
"""

from __future__ import annotations

import pytest
import rasterio

from tilepipe.acquire.sources import CDSE, make_source
from tilepipe.acquire.transfer import proxy_environment, redact
from tilepipe.core.errors import ConfigError


def test_cdse_reads_s3_hrefs_through_gdal_s3_with_keys_in_a_rasterio_session():
    source = CDSE(
        name="cdse",
        collection="sentinel-2-l2a",
        environ={"CDSE_S3_ACCESS_KEY": "AKFAKE", "CDSE_S3_SECRET_KEY": "s3cr3t-fake"},
    )
    assert (
        source.read_path("s3://eodata/Sentinel-2/x/B02.jp2") == "/vsis3/eodata/Sentinel-2/x/B02.jp2"
    )
    options = source.gdal_options()
    assert options["AWS_S3_ENDPOINT"] == "eodata.dataspace.copernicus.eu"
    assert options["AWS_HTTPS"] == "YES" and "AWS_SECRET_ACCESS_KEY" not in options
    session = source.session("s3://eodata/Sentinel-2/x/B02.jp2")
    assert session is not None and "s3cr3t-fake" not in repr(session)
    with rasterio.Env(session=session, **options):  # rasterio refuses keys as Env options
        assert rasterio.env.getenv()["AWS_ACCESS_KEY_ID"] == "AKFAKE"


def test_an_http_endpoint_url_reads_s3_over_plain_http_on_its_port():
    source = make_source({"provider": "cdse", "endpoint_url": "http://127.0.0.1:8123"})
    options = source.gdal_options()
    assert (options["AWS_S3_ENDPOINT"], options["AWS_HTTPS"]) == ("127.0.0.1:8123", "NO")


def test_cdse_falls_back_to_netrc_and_names_every_place_it_looked(tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine eodata.dataspace.copernicus.eu login AKNETRC password fromnetrc\n")
    netrc.chmod(0o600)
    source = CDSE(name="cdse", collection="c", environ={}, netrc_path=str(netrc))
    assert source.s3_keys()["AWS_ACCESS_KEY_ID"] == "AKNETRC"
    empty = CDSE(name="cdse", collection="c", environ={}, netrc_path=str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=r"CDSE_S3_ACCESS_KEY.*netrc"):
        empty.session("s3://eodata/x/B02.jp2")


def test_public_sources_read_unsigned_and_earth_search_defaults_to_collection_1():
    source = make_source({"provider": "earth_search"})
    assert source.collection == "sentinel-2-c1-l2a" and not source.can_resign
    href = "https://example.org/B02.tif"
    assert source.read_path(href) == f"/vsicurl/{href}"


def test_redaction_removes_signatures_and_secret_values():
    text = "GET https://acc.blob.core.windows.net/c/B02.tif?st=1&sig=abc123 failed, key k3y-val-123"
    out = redact(text, ["k3y-val-123"])
    assert "sig=" not in out and "k3y-val-123" not in out
    assert "https://acc.blob.core.windows.net/c/B02.tif?<redacted>" in out


def test_upper_case_proxy_variables_get_the_lower_case_names_libcurl_reads():
    assert proxy_environment({"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "x"}) == {
        "https_proxy": "http://proxy:3128"
    }
