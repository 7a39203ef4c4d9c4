"""The kind of each raster a step reads: dtype, bands, scale and grid, expected vs found."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from tilepipe.core.errors import InputError
from tilepipe.core.inputs import DR, EMBEDDINGS, S2, SCL, check_raster
from tilepipe.core.raster import gtiff_profile
from tilepipe.superres import run_superres

BANDS = ("B02", "B03", "B04", "B08")
ORIGIN = (600000.0, 5300000.0)  # on tile 33UXP's 10 m grid


def write(path, *, count=4, dtype="uint16", pixel=10.0, crs="EPSG:32633", x0=ORIGIN[0], **kw):
    """A small raster of the given shape, dtype and grid, tagged as a 33UXP scene."""
    size = 16
    transform = Affine(pixel, 0, x0, 0, -pixel, ORIGIN[1])
    profile = gtiff_profile(
        width=size, height=size, count=count, dtype=dtype, crs=crs, transform=transform
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((count, size, size), 100, dtype=dtype))
        if count == 4:
            dst.descriptions = kw.pop("descriptions", BANDS)
        if "scales" in kw:
            dst.scales = kw.pop("scales")
        dst.update_tags(TILE="33UXP", DATE="2022-06-21", **kw)
    return path


def test_an_s2_of_the_contract_passes_and_its_tags_come_back(tmp_path):
    tags = check_raster(write(tmp_path / "s2.tif", REFLECTANCE_SCALE="0.0001"), S2)
    assert tags["TILE"] == "33UXP"


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ({"dtype": "float32"}, "expected dtype uint16, found float32"),
        ({"count": 3}, "expected 4 bands ['B02', 'B03', 'B04', 'B08'], found 3"),
        ({"descriptions": ("B04", "B03", "B02", "B08")}, "found ['B04', 'B03', 'B02', 'B08']"),
        ({"REFLECTANCE_SCALE": "1"}, "expected tag REFLECTANCE_SCALE 0.0001, found '1'"),
        ({"scales": (0.01,) * 4}, "expected band scale 1"),
        ({"pixel": 20.0}, "expected 10 m pixels, found 20 x 20 m"),
        ({"crs": "EPSG:32632"}, "expected CRS EPSG:32633 of tile 33UXP, found EPSG:32632"),
        ({"x0": ORIGIN[0] + 5}, "expected the origin on tile 33UXP's 10 m grid"),
    ],
)
def test_an_s2_of_another_kind_names_tile_date_file_and_the_mismatch(tmp_path, change, found):
    path = write(tmp_path / "s2.tif", **change)
    with pytest.raises(InputError) as err:
        check_raster(path, S2)
    assert str(err.value).startswith(f"tile 33UXP, date 2022-06-21, file {path}: not s2.tif")
    assert found in str(err.value)


def test_every_mismatch_is_named_at_once(tmp_path):
    path = write(tmp_path / "s2.tif", dtype="float32", pixel=1.0)
    with pytest.raises(InputError, match=r"found float32; expected 10 m pixels, found 1 x 1 m"):
        check_raster(path, S2)


def test_a_dr_at_10_m_is_not_a_dr(tmp_path):
    with pytest.raises(InputError, match="expected 1 m pixels, found 10 x 10 m"):
        check_raster(write(tmp_path / "dr.tif"), DR)


def test_scl_and_embeddings_have_kinds_of_their_own(tmp_path):
    check_raster(write(tmp_path / "scl.tif", count=1, dtype="uint8"), SCL)
    check_raster(write(tmp_path / "emb.tif", count=8, dtype="float32"), EMBEDDINGS)
    with pytest.raises(InputError, match="expected dtype float32, found uint16"):
        check_raster(write(tmp_path / "emb16.tif", count=8), EMBEDDINGS)


def test_superres_on_a_20_m_raster_is_refused_before_any_output(tmp_path):
    s2 = write(tmp_path / "s2.tif", pixel=20.0)
    with pytest.raises(InputError, match=r"s2\.tif: not s2\.tif .*found 20 x 20 m"):
        run_superres(s2, tmp_path / "out" / "dr.tif", method="bicubic")
    assert not (tmp_path / "out").exists()


def test_superres_on_another_tiles_grid_is_refused(tmp_path):
    s2 = write(tmp_path / "s2.tif", crs="EPSG:32632")
    with pytest.raises(InputError, match=r"tile 33UXP, date 2022-06-21, file .*EPSG:32632"):
        run_superres(s2, tmp_path / "dr.tif", method="bicubic", tile="33UXP", date="2022-06-21")
