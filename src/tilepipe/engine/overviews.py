"""Overviews built while the engine writes: each finished row strip is averaged 2x2, level by level.

The engine writes a panel's rows top to bottom; every level of the pyramid takes the rows of
the level above as they come, averages them 2x2 (nodata ignored, as GDAL's ``AVERAGE``) and
writes its own rows into a level file (``<output>.ov<k>.tif``) one block row at a time. Memory
is a block row per level and panel, whatever the raster's size, and the full-resolution output
is never read back. Levels whose pixels would straddle two column panels (factor not dividing
the panel edges) are built afterwards from the last streamed level, which is small. The
finished output and its level files are then put together into one Cloud-Optimised GeoTIFF by
GDAL's COG driver through a VRT that declares the level files as the output's overviews
(``OVERVIEWS=FORCE_USE_EXISTING``: the overviews are copied, not computed again).
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.dtypes import _gdal_typename
from rasterio.windows import Window

from tilepipe.core.errors import InputError, context
from tilepipe.core.raster import overview_factors

__all__ = ["Pyramid", "assemble", "overview_factors"]


#: Input rows averaged at a time: bounds the float temporaries (4 x 64 x 7680 float32: 8 MB).
REDUCE_ROWS = 64


def reduce2(x: np.ndarray, nodata: float | None) -> np.ndarray:
    """2x2 average of (bands, rows, cols), ignoring nodata; an odd last row or column alone.

    A pixel whose four inputs are all nodata is nodata; integers round half up. Computed
    ``REDUCE_ROWS`` rows at a time, in float32 for 8- and 16-bit data (exact: four uint16
    values sum below 2**24), else float64.
    """
    parts = [
        _reduce_rows(x[:, r : r + REDUCE_ROWS], nodata) for r in range(0, x.shape[1], REDUCE_ROWS)
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _reduce_rows(x: np.ndarray, nodata: float | None) -> np.ndarray:
    """``reduce2`` of one chunk of rows (an even count, or the raster's last rows)."""
    _, h, w = x.shape
    work = np.float32 if x.dtype.itemsize <= 2 else np.float64
    valid = np.ones(x.shape, bool) if nodata is None else _valid(x, nodata)
    # nodata 0 adds nothing to a sum: no masked copy needed (tilepipe's uint16 outputs)
    vals = x.astype(work) if nodata == 0 else np.where(valid, x, 0).astype(work)
    if h % 2 or w % 2:
        vals = np.pad(vals, ((0, 0), (0, h % 2), (0, w % 2)))
        valid = np.pad(valid, ((0, 0), (0, h % 2), (0, w % 2)))
    total = vals[:, 0::2, 0::2] + vals[:, 1::2, 0::2]
    total += vals[:, 0::2, 1::2]
    total += vals[:, 1::2, 1::2]
    m = valid.view(np.uint8)
    count = m[:, 0::2, 0::2] + m[:, 1::2, 0::2]
    count += m[:, 0::2, 1::2]
    count += m[:, 1::2, 1::2]
    mean = total / np.maximum(count, 1).astype(work)
    if np.issubdtype(x.dtype, np.integer):
        mean = np.floor(mean + 0.5)
    out = mean.astype(x.dtype)
    if nodata is not None:
        out[count == 0] = nodata
    return out


def _valid(x: np.ndarray, nodata: float) -> np.ndarray:
    """Pixels that are not nodata (NaN nodata matches NaN)."""
    return ~np.isnan(x) if np.isnan(nodata) else x != nodata


@dataclass
class LevelFile:
    """One overview level of the output: its file, size and open dataset."""

    factor: int
    path: Path
    width: int
    height: int
    ds: rasterio.io.DatasetWriter | None = None


@dataclass
class Reducer:
    """One level of one column range: takes the rows of the level above, writes its own rows.

    ``c0`` is its first column in its own level; ``height_in`` the rows the level above has.
    """

    level: LevelFile
    c0: int
    height_in: int
    block_h: int
    nodata: float | None
    below: Reducer | None = None
    carry: np.ndarray | None = None  # an odd row waiting for its pair
    seen: int = 0  # rows of the level above received
    written: int = 0  # rows of this level written
    pending: list[np.ndarray] = field(default_factory=list)

    def put(self, rows: np.ndarray) -> None:
        """Take the next rows (bands, n, cols) of the level above."""
        self.seen += rows.shape[1]
        if self.carry is not None:
            rows = np.concatenate([self.carry, rows], axis=1)
            self.carry = None
        end = self.seen >= self.height_in
        n = rows.shape[1] if end else rows.shape[1] // 2 * 2
        if n < rows.shape[1]:
            self.carry = rows[:, n:].copy()
        if n:
            self._emit(reduce2(rows[:, :n], self.nodata), end)

    def _emit(self, rows: np.ndarray, end: bool) -> None:
        """Queue this level's rows, write whole block rows, pass them on to the next level."""
        self.pending.append(rows)
        queued = sum(p.shape[1] for p in self.pending)
        n = queued if end else queued // self.block_h * self.block_h
        if n:
            data = np.concatenate(self.pending, axis=1)
            win = Window(self.c0, self.written, data.shape[2], n)
            self.level.ds.write(data[:, :n], window=win)
            self.written += n
            self.pending = [data[:, n:]] if n < queued else []
        if self.below is not None:
            self.below.put(rows)


def chain(
    levels: list[LevelFile], c0: int, height_in: int, block_h: int, nodata: float | None
) -> Reducer | None:
    """Reducers for ``levels`` (top first) of the column range starting at full-res ``c0``."""
    head = None
    for k in range(len(levels) - 1, -1, -1):
        above_h = levels[k - 1].height if k else height_in
        head = Reducer(levels[k], c0 // levels[k].factor, above_h, block_h, nodata, below=head)
    return head


def streamable(factors: list[int], edges: list[int]) -> int:
    """How many of ``factors`` divide every inner panel edge (levels built while streaming)."""
    return sum(1 for f in factors if all(e % f == 0 for e in edges))


class Pyramid:
    """The overview level files of one output, built while its panels are written."""

    def __init__(
        self, out_path: Path, profile: dict[str, object], edges: list[int], factors: list[int]
    ) -> None:
        """Level files beside ``out_path`` for ``factors``; ``edges`` are the inner panel edges."""
        self.out_path, self.profile = out_path, profile
        width, height = int(profile["width"]), int(profile["height"])
        self.width, self.height = width, height
        self.block_h = int(profile["blockysize"])
        self.nodata = profile.get("nodata")
        self.levels = [
            LevelFile(f, level_path(out_path, f), -(-width // f), -(-height // f)) for f in factors
        ]
        self.n_stream = streamable(factors, edges)

    @contextlib.contextmanager
    def open(self) -> Iterator[Pyramid]:
        """Create the level files; close them on leaving (built or not)."""
        try:
            for level in self.levels:
                prof = dict(self.profile, width=level.width, height=level.height)
                prof.update(_small_blocks(level.width, level.height, prof))
                level.ds = rasterio.open(level.path, "w", **prof)
            yield self
        finally:
            for level in self.levels:
                if level.ds is not None:
                    level.ds.close()
                    level.ds = None

    def panel(self, b0: int) -> Reducer | None:
        """The streamed levels' reducers for the panel starting at output column ``b0``."""
        return chain(self.levels[: self.n_stream], b0, self.height, self.block_h, self.nodata)

    def finish(self) -> None:
        """Build the levels that could not be streamed from the last streamed one, strip-wise."""
        rest = self.levels[self.n_stream :]
        if not rest:
            return
        if not self.n_stream:  # panel edges are multiples of 256 px: level 1/2 always streams
            raise AssertionError("no overview level was streamed")
        top = self.levels[self.n_stream - 1]
        head = chain(rest, 0, top.height, self.block_h, self.nodata)
        top.ds.close()
        with rasterio.open(top.path) as src:
            for r0 in range(0, src.height, self.block_h):
                n = min(self.block_h, src.height - r0)
                head.put(src.read(window=Window(0, r0, src.width, n)))
        top.ds = None

    def remove(self) -> None:
        """Delete the level files."""
        for level in self.levels:
            level.path.unlink(missing_ok=True)


def _small_blocks(width: int, height: int, prof: dict[str, object]) -> dict[str, object]:
    """Block size of a level file: the output's, or 128/16 px when the level is smaller."""
    block = int(prof["blockxsize"])
    while block > 16 and (width < block or height < block):
        block //= 2
    return {"blockxsize": block, "blockysize": block}


def level_path(out_path: Path, factor: int) -> Path:
    """The level file of overview ``factor`` beside the output being written."""
    return out_path.with_name(f"{out_path.name}.ov{factor}.tif")


def vrt_with_overviews(path: Path, levels: list[Path], vrt: Path) -> None:
    """Write a VRT of ``path`` (tags, band descriptions, nodata) declaring ``levels`` overviews."""
    with rasterio.open(path) as src:
        root = ET.Element("VRTDataset", rasterXSize=str(src.width), rasterYSize=str(src.height))
        ET.SubElement(root, "SRS").text = src.crs.to_wkt()
        ET.SubElement(root, "GeoTransform").text = ", ".join(
            repr(v) for v in src.transform.to_gdal()
        )
        meta = ET.SubElement(root, "Metadata")
        for key, value in src.tags().items():
            ET.SubElement(meta, "MDI", key=key).text = value
        for b in src.indexes:
            band = ET.SubElement(
                root, "VRTRasterBand", dataType=_gdal_typename(src.dtypes[b - 1]), band=str(b)
            )
            if src.nodata is not None:
                ET.SubElement(band, "NoDataValue").text = repr(float(src.nodata))
            if src.descriptions[b - 1]:
                ET.SubElement(band, "Description").text = src.descriptions[b - 1]
            _source(ET.SubElement(band, "SimpleSource"), path, b)
            for level in levels:
                _source(ET.SubElement(band, "Overview"), level, b)
    vrt.write_text(ET.tostring(root, encoding="unicode"))


def _source(elem: ET.Element, path: Path, band: int) -> None:
    """Name a source file (absolute) and band under a VRT element."""
    ET.SubElement(elem, "SourceFilename", relativeToVRT="0").text = str(path.resolve())
    ET.SubElement(elem, "SourceBand").text = str(band)


def cog_options(profile: dict[str, object], overviews: str) -> dict[str, object]:
    """GDAL COG driver options keeping the output's codec, level, predictor and block size."""
    return {
        "driver": "COG",
        "compress": "DEFLATE",
        "level": int(profile["zlevel"]),
        "predictor": "YES" if int(profile["predictor"]) > 1 else "NO",
        "blocksize": int(profile["blockxsize"]),
        "bigtiff": "IF_SAFER",
        "num_threads": "ALL_CPUS",
        "overviews": overviews,
        "overview_resampling": "AVERAGE",
    }


def gtiff_options(profile: dict[str, object]) -> dict[str, object]:
    """GTiff creation options of the output, copying the prebuilt overviews in after it."""
    keep = ("tiled", "blockxsize", "blockysize", "compress", "zlevel", "predictor", "bigtiff")
    return {"driver": "GTiff", "copy_src_overviews": "YES", **{k: profile[k] for k in keep}}


def assemble(path: Path, profile: dict[str, object], levels: list[Path], *, cog: bool) -> None:
    """Rewrite ``path`` in place with the prebuilt ``levels`` as its overviews, as a COG or not.

    A copy: GDAL reads the full resolution once and copies the overviews, computing nothing.
    """
    vrt = path.with_name(f"{path.name}.ovr.vrt")
    out = path.with_name(f"{path.name}.cog.tif")
    try:
        vrt_with_overviews(path, levels, vrt)
        mode = "FORCE_USE_EXISTING" if levels else "NONE"
        opts = cog_options(profile, mode) if cog else gtiff_options(profile)
        rasterio.shutil.copy(str(vrt), str(out), **opts)
        os.replace(out, path)
    except rasterio.errors.RasterioError as exc:
        what = "a COG" if cog else "overviews"
        raise InputError(f"{context(path=path)}cannot make {what}: {exc}") from exc
    finally:
        vrt.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
