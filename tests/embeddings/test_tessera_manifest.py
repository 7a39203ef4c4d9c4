"""TESSERA in geotessera >= 0.8's tile tree: ``npy/{dataset}/manifest.parquet`` (sizes only),
landmasks in their own tree, and every fetched file checked against the server's MD5 ETag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from tilepipe.core.errors import InputError
from tilepipe.core.grid import tile_grid
from tilepipe.demo.campaign import demo_window
from tilepipe.embeddings.remote import ChecksumError, check_etag
from tilepipe.embeddings.tessera import MANIFEST, build_tile_embeddings, layout_of

from ..loopback import Fault

YEAR = 2022


def _where(tile: str, size: int) -> dict:
    transform, _, _ = demo_window(tile, size)
    return dict(crs=tile_grid(tile).crs, transform=transform, width=size, height=size, tile=tile)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_the_source_cooperative_tree_is_read_from_its_path():
    layout = layout_of("https://data.source.coop/tessera/tessera/npy/v1.1-cam")
    assert layout.registry == MANIFEST
    assert layout.landmasks == "https://data.source.coop/tessera/tessera/landmasks/v1.1"
    assert layout_of("https://dl2.geotessera.org/v1").registry == "registry.parquet"


def test_the_manifest_tree_gives_the_0_7_mirror_s_numbers(demo, tmp_path):
    where = _where("33UXP", demo["size"])
    build_tile_embeddings(demo["tessera"], YEAR, tmp_path / "old.tif", **where)
    build_tile_embeddings(demo["tessera_npy"], YEAR, tmp_path / "new.tif", **where)
    assert np.array_equal(_read(tmp_path / "old.tif"), _read(tmp_path / "new.tif"), True)


def test_the_manifest_tree_over_http_fetches_both_trees(demo, server, tmp_path):
    url = server.mirror_url("tessera-sc") + "/npy/v1"
    where = _where("31UFS", demo["size"])
    build_tile_embeddings(url, YEAR, tmp_path / "http.tif", cache=tmp_path / "c", **where)
    build_tile_embeddings(demo["tessera"], YEAR, tmp_path / "local.tif", **where)
    assert np.array_equal(_read(tmp_path / "http.tif"), _read(tmp_path / "local.tif"), True)
    fetched = {r[1].split("/tessera-sc/", 1)[-1] for r in server.stats()["requests"]}
    assert {"npy/v1/manifest.parquet", "landmasks/v1/landmasks.parquet"} <= fetched
    assert "landmasks/v1/grid_5.15_50.95.tiff" in fetched


def test_bytes_that_differ_from_the_etag_are_a_named_error(demo, server, tmp_path):
    server.inject(Fault("corrupt", count=3, match="_scales.npy"))
    url = server.mirror_url("tessera-sc") + "/npy/v1"
    with pytest.raises(InputError, match=r"31UFS.*year 2022: scales file.*MD5 .* != ETag"):
        build_tile_embeddings(
            url, YEAR, tmp_path / "e.tif", cache=tmp_path / "c", **_where("31UFS", demo["size"])
        )
    assert not (tmp_path / "e.tif").exists()
    assert not list((tmp_path / "c").rglob("*_scales.npy"))


def test_one_damaged_transfer_is_retried(demo, server, tmp_path):
    server.inject(Fault("corrupt", count=1, match="_scales.npy"))
    url = server.mirror_url("tessera-sc") + "/npy/v1"
    build_tile_embeddings(
        url, YEAR, tmp_path / "e.tif", cache=tmp_path / "c", **_where("31UFS", demo["size"])
    )
    assert (tmp_path / "e.tif").exists()


@pytest.mark.parametrize("etag", [None, "", 'W/"abc"', '"0123456789abcdef0123456789abcdef-3"'])
def test_an_etag_that_is_no_md5_is_not_checked(etag):
    check_etag(etag, "f" * 32)


def test_a_plain_etag_is_the_md5():
    check_etag('"' + "a" * 32 + '"', "a" * 32)
    with pytest.raises(ChecksumError):
        check_etag('"' + "a" * 32 + '"', "b" * 32)


def test_a_manifest_without_grid_size_is_named(demo, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "npy" / "v1").mkdir(parents=True)
    pq.write_table(
        pa.table({"year": [2022], "lon": [5.15], "lat": [50.95]}), tmp_path / "npy/v1" / MANIFEST
    )
    where = dict(crs="EPSG:32631", transform=Affine(10, 0, 6e5, 0, -10, 5.6e6), width=4, height=4)
    with pytest.raises(InputError, match=r"manifest.parquet.*lacks columns \['grid_size'\]"):
        build_tile_embeddings(tmp_path / "npy" / "v1", YEAR, tmp_path / "e.tif", **where)
