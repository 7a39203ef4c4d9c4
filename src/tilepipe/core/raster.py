"""Raster I/O habits shared by every step: atomic outputs (one or a set published together),
the GeoTIFF profile, orientation."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import Resampling

from tilepipe.core.scratch import temp_beside

#: Creation options for every GeoTIFF tilepipe writes: tiled, compressed, BigTIFF when needed.
GTIFF_OPTIONS: dict[str, object] = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    "compress": "deflate",
    "zlevel": 1,
    "bigtiff": "if_safer",
    "num_threads": "all_cpus",
}


def gtiff_profile(
    *, width: int, height: int, count: int, dtype: str, crs, transform: Affine, nodata=None
) -> dict[str, object]:
    """A complete rasterio profile for a tiled, compressed GeoTIFF with a fitting predictor."""
    predictor = 3 if dtype.startswith("float") else 2
    profile = dict(GTIFF_OPTIONS)
    profile.update(
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        predictor=predictor,
    )
    if width < 256 or height < 256:
        # GDAL requires block sizes that are multiples of 16; small rasters use 128-px blocks.
        profile["blockxsize"] = profile["blockysize"] = 128 if min(width, height) >= 128 else 16
    return profile


#: GDAL block cache (MB) while a raster is rewritten as a COG.
COG_CACHE_MB = 128


def overview_factors(width: int, height: int, block: int) -> list[int]:
    """Powers of two until the smallest overview fits in one block."""
    factors, f = [], 2
    while max(width, height) / (f // 2) > block:
        factors.append(f)
        f *= 2
    return factors


def rewrite_as_cog(path: str | os.PathLike, resampling: Resampling = Resampling.average) -> None:
    """Rewrite a finished GeoTIFF in place as a Cloud-Optimised GeoTIFF with internal overviews.

    Overviews (``resampling``: average for reflectance, nearest for classes) down to one block,
    then a copy with every IFD first (GTiff ``COPY_SRC_OVERVIEWS``, the layout rio-cogeo writes),
    keeping the tiling, DEFLATE level 1, predictor, interleave, tags and nodata. For the small
    rasters (s2.tif, scl.tif, class and embedding rasters); dr.tif has its own streamed pyramid.
    """
    path = Path(path)
    with rasterio.open(path) as src:
        block, dtype = src.block_shapes[0][1], src.dtypes[0]
        factors = overview_factors(src.width, src.height, block)
        interleave = src.interleaving.name.lower() if src.interleaving else "pixel"
    opts = dict(GTIFF_OPTIONS, blockxsize=block, blockysize=block, interleave=interleave)
    opts.update(predictor=3 if dtype.startswith("float") else 2, copy_src_overviews="YES")
    cog = path.with_name(f"{path.name}.cog.tif")
    # A bounded block cache (GDAL's default is 5 % of the node's RAM), as the engine's.
    env = rasterio.Env(
        GDAL_CACHEMAX=COG_CACHE_MB, GDAL_TIFF_OVR_BLOCKSIZE=str(block), ZLEVEL_OVERVIEW="1"
    )
    try:
        with env:
            with rasterio.open(path, "r+") as ds:
                if factors:
                    ds.build_overviews(factors, resampling)
            rasterio.shutil.copy(str(path), str(cog), **opts)
        os.replace(cog, path)
    finally:
        cog.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    A killed or failing step therefore never leaves a half-written file where a finished one
    belongs: the temporary (``.name.tmp-<owner>-XXXX``, see :mod:`tilepipe.core.scratch`) is
    removed on error and is never a declared output; one left by a killed process goes when the
    output is written next.
    """
    with atomic_outputs(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield one temporary beside each of ``paths``; publish them all only if the block succeeds.

    A step with several outputs (s2.tif and scl.tif, fields.gpkg and fields.parquet, a model and
    its metrics) writes each into its temporary; then every temporary is checked and all are
    renamed into place. On any failure every temporary is removed, and a rename that fails
    half-way removes the outputs already renamed (and the rest of the set), so the outputs
    appear together or not at all, never as a mix of a new one and an old or missing one.
    """
    dests = [Path(p) for p in paths]
    temps = [temp_beside(dest, "tmp", dest.suffix) for dest in dests]
    try:
        yield temps
        for tmp in temps:
            if tmp.suffix.lower() in (".tif", ".tiff") and tmp.is_file():
                check_blocks_written(tmp)
        _publish(temps, dests)
    except BaseException:
        for tmp in temps:
            _remove(tmp, Path(f"{tmp}.aux.xml"))
        raise


def _publish(temps: list[Path], dests: list[Path]) -> None:
    """Rename every temporary onto its output; if one rename fails, leave none of the set."""
    for done, (tmp, dest) in enumerate(zip(temps, dests, strict=True)):
        try:
            os.replace(tmp, dest)
        except BaseException:
            if done:  # some outputs are new already: the set would mix new and old files
                _remove(*dests)
            raise


def _remove(*paths: Path) -> None:
    """Remove files that may or may not exist."""
    for path in paths:
        with contextlib.suppress(OSError):  # cleanup must not hide the failure
            path.unlink()


def check_blocks_written(path: str | os.PathLike) -> None:
    """Raise OSError unless every block of a GeoTIFF lies inside the file.

    GDAL reports a write that failed while flushing (disk full, quota, file-size limit) only as
    a logged error: the file closes "successfully" with blocks missing. Reading the block
    offsets and sizes (no decompression) catches it before the file is renamed into place.
    """
    size = Path(path).stat().st_size
    with rasterio.open(path) as src:
        rows = -(-src.height // src.block_shapes[0][0])
        cols = -(-src.width // src.block_shapes[0][1])
        by_band = src.interleaving is not None and src.interleaving.name == "band"
        for bidx in src.indexes if by_band else (1,):
            for row in range(rows):
                for col in range(cols):
                    offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=bidx)
                    length = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=bidx)
                    if offset is None and length is None:
                        return  # not a layout GDAL exposes: nothing to check against
                    if (
                        not int(offset or 0)
                        or not int(length or 0)
                        or (int(offset) + int(length) > size)
                    ):
                        raise OSError(
                            f"{path}: block ({col}, {row}) of band {bidx} was not written "
                            f"(disk full or write error; file is {size} bytes)"
                        )


def is_north_up(transform: Affine) -> bool:
    """True when rows run north to south without rotation (the only layout tilepipe writes)."""
    return transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """Return the dataset-level tags of a raster."""
    with rasterio.open(path) as src:
        return src.tags()


def stack_vrt(paths: list[str | os.PathLike], dst: str | os.PathLike) -> Path:
    """Write a GDAL VRT at ``dst`` holding every band of ``paths`` in turn (all on one grid:
    same size, transform, CRS and dtype): two dates' images as one raster for a two-date
    model, without copying pixels. The VRT takes the first image's tags and nodata."""
    from xml.etree import ElementTree as ET

    with contextlib.ExitStack() as stack:
        srcs = [stack.enter_context(rasterio.open(p)) for p in paths]
        first = srcs[0]
        root = ET.Element("VRTDataset", rasterXSize=str(first.width), rasterYSize=str(first.height))
        ET.SubElement(root, "SRS").text = first.crs.to_wkt() if first.crs else ""
        ET.SubElement(root, "GeoTransform").text = ", ".join(
            repr(v) for v in first.transform.to_gdal()
        )
        meta = ET.SubElement(root, "Metadata")
        for key, value in first.tags().items():
            ET.SubElement(meta, "MDI", key=key).text = value
        n = 0
        for path, src in zip(paths, srcs, strict=True):
            for i in range(1, src.count + 1):
                n += 1
                dtype = {"uint16": "UInt16", "uint8": "Byte", "float32": "Float32"}[
                    src.dtypes[i - 1]
                ]
                band = ET.SubElement(root, "VRTRasterBand", dataType=dtype, band=str(n))
                if src.nodata is not None:
                    ET.SubElement(band, "NoDataValue").text = repr(float(src.nodata))
                ET.SubElement(band, "Description").text = src.descriptions[i - 1] or ""
                source = ET.SubElement(band, "SimpleSource")
                name = ET.SubElement(source, "SourceFilename", relativeToVRT="0")
                name.text = str(Path(path).resolve())
                ET.SubElement(source, "SourceBand").text = str(i)
    dst = Path(dst)
    ET.ElementTree(root).write(dst, encoding="unicode")
    return dst
