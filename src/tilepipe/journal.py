"""Resume state of the tiling engine: finished output row slabs journaled beside the output.

A long run writes each finished slab of output rows (whole blocks, full width) as its own small
GeoTIFF in ``<output>.parts/`` and appends one line to ``<output>.parts/journal.jsonl`` once the
slab is on disk. The directory is not a declared output, so Snakemake's handling of incomplete
outputs never deletes it; a rerun with the same fingerprint (input, model, settings) continues
after the last journaled slab, any other rerun starts over. The final output is assembled from
the slabs through a VRT by GDAL (plain tiled GeoTIFF or COG) and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine

from tilepipe.errors import InputError, context
from tilepipe.raster import atomic_output

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
#: Slabs are scratch: a fast codec, recompressed once into the final output.
SLAB_OPTIONS = {"compress": "zstd", "zstd_level": 1}


def parts_dir(dst: str | os.PathLike) -> Path:
    """The resume directory of an output: ``<output>.parts`` beside it."""
    dst = Path(dst)
    return dst.with_name(dst.name + ".parts")


def fingerprint(src: str | os.PathLike, settings: dict[str, object]) -> str:
    """SHA-256 over the input's identity (path, size, mtime) and every setting of the run."""
    st = Path(src).stat()
    ident = {"src": str(Path(src).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    blob = json.dumps({**ident, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (survives a node crash, not just kill)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SlabJournal:
    """Append-only record of finished output slabs of one run (see module docstring)."""

    def __init__(self, dst: str | os.PathLike, fp: str, profile: dict[str, object]):
        """Open the journal of ``dst``: keep its slabs if ``fp`` matches, otherwise start over."""
        self.dir = parts_dir(dst)
        self.profile = profile
        self.fp = fp
        self.slabs: list[tuple[int, int, str]] = []  # (row0, row1, file name), contiguous from 0
        if self.dir.is_dir():
            self._load()
        if not self.slabs:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
            self._append({"fingerprint": fp, "height": profile["height"]})

    @property
    def rows_done(self) -> int:
        """Output rows already on disk (a contiguous prefix from row 0)."""
        return self.slabs[-1][1] if self.slabs else 0

    def _load(self) -> None:
        """Read the journal; keep the contiguous prefix of slabs whose files exist."""
        try:
            lines = (self.dir / JOURNAL).read_text().splitlines()
            head = json.loads(lines[0])
        except (OSError, ValueError, IndexError):
            log.warning("%s: no readable journal, starting over", self.dir)
            return
        if head.get("fingerprint") != self.fp:
            log.warning("%s: input, model or settings changed since, starting over", self.dir)
            return
        for line in lines[1:]:
            try:
                rec = json.loads(line)
                row0, row1, name = int(rec["row0"]), int(rec["row1"]), str(rec["file"])
            except (ValueError, KeyError, TypeError):
                break  # a line cut by a kill: everything after it is unknown
            if row0 != self.rows_done or not (self.dir / name).is_file():
                break
            self.slabs.append((row0, row1, name))
        if self.slabs:
            log.info("%s: resuming after %d journaled output rows", self.dir, self.rows_done)

    def _append(self, record: dict[str, object]) -> None:
        """Append one JSON line and fsync it, so a journaled slab is a durable fact."""
        with open(self.dir / JOURNAL, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def add(self, data: np.ndarray, row0: int) -> None:
        """Write output rows ``row0..`` (bands, rows, full width) as a slab, then journal it."""
        if row0 != self.rows_done:
            raise AssertionError(f"slab starts at row {row0}, journal is at {self.rows_done}")
        n = data.shape[1]
        name = f"rows_{row0:09d}_{row0 + n:09d}.tif"
        prof = dict(self.profile)
        for key in ("blockxsize", "blockysize"):
            prof.pop(key, None)
        # Untiled 16-row strips: any slab height works and GDAL reads them back row-wise.
        shift = Affine.translation(0, row0)
        prof.update(
            SLAB_OPTIONS, tiled=False, blockysize=16, height=n, transform=prof["transform"] * shift
        )
        with atomic_output(self.dir / name) as tmp, rasterio.open(tmp, "w", **prof) as dst:
            dst.write(data)
        _fsync_dir(self.dir)
        self._append({"row0": row0, "row1": row0 + n, "file": name})
        self.slabs.append((row0, row0 + n, name))

    def write_vrt(self, descriptions: list[str] | None, tags: dict[str, object]) -> Path:
        """Write a VRT mosaic of the slabs that carries band descriptions, nodata and tags."""
        p = self.profile
        width, height = int(p["width"]), int(p["height"])
        if self.rows_done != height:
            raise AssertionError(f"journal covers {self.rows_done} of {height} rows")
        root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
        ET.SubElement(root, "SRS").text = rasterio.crs.CRS.from_user_input(p["crs"]).to_wkt()
        ET.SubElement(root, "GeoTransform").text = ", ".join(
            repr(v) for v in Affine.to_gdal(p["transform"])
        )
        meta = ET.SubElement(root, "Metadata")
        for key, value in (tags or {}).items():
            ET.SubElement(meta, "MDI", key=str(key)).text = str(value)
        dtype = {"uint16": "UInt16", "uint8": "Byte", "float32": "Float32", "int16": "Int16"}
        for b in range(1, int(p["count"]) + 1):
            band = ET.SubElement(
                root, "VRTRasterBand", dataType=dtype[str(p["dtype"])], band=str(b)
            )
            if descriptions and b <= len(descriptions):
                ET.SubElement(band, "Description").text = descriptions[b - 1]
            if p.get("nodata") is not None:
                ET.SubElement(band, "NoDataValue").text = repr(float(p["nodata"]))
            for row0, row1, name in self.slabs:
                src = ET.SubElement(band, "SimpleSource")
                ET.SubElement(src, "SourceFilename", relativeToVRT="1").text = name
                ET.SubElement(src, "SourceBand").text = str(b)
                rect = {"xOff": "0", "yOff": "0", "xSize": str(width), "ySize": str(row1 - row0)}
                ET.SubElement(src, "SrcRect", **rect)
                ET.SubElement(src, "DstRect", **{**rect, "yOff": str(row0)})
        path = self.dir / "mosaic.vrt"
        ET.ElementTree(root).write(path)
        return path

    def remove(self) -> None:
        """Delete the resume state once the final output is in place."""
        shutil.rmtree(self.dir, ignore_errors=True)


def finish_output(
    vrt: Path,
    dst: str | os.PathLike,
    profile: dict[str, object],
    *,
    cog: bool = False,
    overviews: bool = False,
) -> None:
    """Copy the slab mosaic into the final GeoTIFF (or COG), atomically; optional overviews."""
    predictor = int(profile["predictor"])
    if cog:
        opts: dict[str, object] = {
            "driver": "COG",
            "compress": "DEFLATE",
            "predictor": "YES" if predictor > 1 else "NO",
            "blocksize": int(profile["blockxsize"]),
            "bigtiff": "IF_SAFER",
            "num_threads": "ALL_CPUS",
            "overviews": "AUTO" if overviews else "NONE",
            "overview_resampling": "AVERAGE",
        }
    else:
        keys = ("tiled", "blockxsize", "blockysize", "compress", "bigtiff", "num_threads")
        opts = {"driver": "GTiff", "predictor": predictor, **{k: profile[k] for k in keys}}
    try:
        with atomic_output(dst) as tmp:
            rasterio.shutil.copy(str(vrt), str(tmp), **opts)
            if overviews and not cog:
                with rasterio.open(tmp, "r+") as ds:
                    factors = overview_factors(ds.width, ds.height, int(profile["blockxsize"]))
                    ds.build_overviews(factors, rasterio.enums.Resampling.average)
    except rasterio.errors.RasterioError as exc:
        raise InputError(
            f"{context(path=dst)}cannot assemble the output from {vrt}: {exc}"
        ) from exc


def overview_factors(width: int, height: int, block: int) -> list[int]:
    """Powers of two until the smallest overview fits in one block."""
    factors, f = [], 2
    while max(width, height) / (f // 2) > block:
        factors.append(f)
        f *= 2
    return factors
