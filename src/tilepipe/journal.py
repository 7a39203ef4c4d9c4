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
    """Append-only record of finished output slabs of one run (see module docstring).

    A slab is a block of output rows of one column panel; the slabs of each panel are
    contiguous from row 0.
    """

    def __init__(self, dst: str | os.PathLike, fp: str, profile: dict[str, object]):
        """Open the journal of ``dst``: keep its slabs if ``fp`` matches, otherwise start over."""
        self.dir = parts_dir(dst)
        self.profile = profile
        self.fp = fp
        self.slabs: list[dict[str, object]] = []  # {"col0", "col1", "row0", "row1", "file"}
        self._done: dict[int, int] = {}  # panel's first output column -> rows on disk
        self._next: dict[int, tuple[int, str | None]] = {}  # panel -> (next window row, carry)
        if self.dir.is_dir():
            self._load()
        if not self.slabs:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
            self._append({"fingerprint": fp, "height": profile["height"]})

    def rows_done(self, col0: int = 0) -> int:
        """Output rows already on disk for the panel starting at output column ``col0``."""
        return self._done.get(col0, 0)

    def resume_point(self, col0: int = 0) -> tuple[int, int, np.ndarray | None]:
        """(rows on disk, next window row, accumulator carry) of a panel; carry None at start."""
        next_row, carry = self._next.get(col0, (0, None))
        acc = np.load(self.dir / carry) if carry else None
        return self.rows_done(col0), next_row, acc

    @property
    def complete(self) -> bool:
        """True when the slabs cover the whole output."""
        width, height = int(self.profile["width"]), int(self.profile["height"])
        covered = sum(
            (int(s["col1"]) - int(s["col0"])) * (int(s["row1"]) - int(s["row0"]))
            for s in self.slabs
        )
        return covered == width * height

    def _load(self) -> None:
        """Read the journal; keep, per panel, the contiguous slabs whose files exist."""
        try:
            lines = (self.dir / JOURNAL).read_text().splitlines()
            head = json.loads(lines[0])
        except (OSError, ValueError, IndexError):
            log.warning("%s: no readable journal, starting over", self.dir)
            return
        if head.get("fingerprint") != self.fp:
            log.warning("%s: input, model or settings changed since, starting over", self.dir)
            return
        kept = [lines[0]]
        for line in lines[1:]:
            try:
                raw = json.loads(line)
                rec = {k: int(raw[k]) for k in ("col0", "col1", "row0", "row1", "next_row")}
                rec |= {"file": raw["file"], "carry": raw["carry"]}
            except (ValueError, KeyError, TypeError):
                break  # a line cut by a kill: everything after it is unknown
            slab_lost = rec["file"] and not (self.dir / rec["file"]).is_file()
            if rec["row0"] != self.rows_done(rec["col0"]) or slab_lost:
                break
            kept.append(line)
            if rec["file"]:
                self.slabs.append(rec)
            self._done[rec["col0"]] = rec["row1"]
            self._next[rec["col0"]] = (rec["next_row"], rec["carry"])
        if len(kept) < len(lines):
            # Drop the unusable tail, so that records appended from now on are read next time.
            with atomic_output(self.dir / JOURNAL) as tmp, open(tmp, "w") as fh:
                fh.write("\n".join(kept) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        # Only the latest carry of each panel is kept; without it the panel cannot continue.
        if any(c and not (self.dir / c).is_file() for _, c in self._next.values()):
            log.warning("%s: accumulator carry missing, starting over", self.dir)
            self.slabs, self._done, self._next = [], {}, {}
        if self.slabs:
            log.info("%s: resuming after %d journaled slabs", self.dir, len(self.slabs))

    def _append(self, record: dict[str, object]) -> None:
        """Append one JSON line and fsync it, so a journaled slab is a durable fact."""
        with open(self.dir / JOURNAL, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def add(
        self,
        data: np.ndarray,
        row0: int,
        col0: int = 0,
        *,
        next_row: int = 0,
        carry: np.ndarray | None = None,
    ) -> None:
        """Write a slab (bands, rows, cols) at output row ``row0``, column ``col0``; journal it.

        ``carry`` is the accumulator part that the panel's window row ``next_row`` continues
        from; with it a resumed run recomputes nothing that was journaled.
        """
        if row0 != self.rows_done(col0):
            raise AssertionError(f"slab at row {row0}, journal is at {self.rows_done(col0)}")
        n, w = data.shape[1], data.shape[2]
        name = f"c{col0:09d}_r{row0:09d}_{row0 + n:09d}.tif" if n else None
        if name:
            prof = dict(self.profile)
            for key in ("blockxsize", "blockysize"):
                prof.pop(key, None)
            # Untiled 16-row strips: any slab size works and GDAL reads them back row-wise.
            shift = Affine.translation(col0, row0)
            prof.update(SLAB_OPTIONS, tiled=False, blockysize=16, height=n, width=w)
            prof["transform"] = prof["transform"] * shift
            with atomic_output(self.dir / name) as tmp, rasterio.open(tmp, "w", **prof) as dst:
                dst.write(data)
        carry_name = None
        if carry is not None:
            carry_name = f"carry_c{col0:09d}_w{next_row:06d}.npy"
            with atomic_output(self.dir / carry_name) as tmp, open(tmp, "wb") as fh:
                np.save(fh, carry)
        _fsync_dir(self.dir)
        rec = {"col0": col0, "col1": col0 + w, "row0": row0, "row1": row0 + n, "file": name}
        rec |= {"next_row": next_row, "carry": carry_name}
        self._append(rec)
        previous = self._next.get(col0, (0, None))[1]
        if previous and previous != carry_name:
            (self.dir / previous).unlink(missing_ok=True)  # superseded by this record
        if name:
            self.slabs.append(rec)
        self._done[col0] = row0 + n
        self._next[col0] = (next_row, carry_name)

    def write_vrt(self, descriptions: list[str] | None, tags: dict[str, object]) -> Path:
        """Write a VRT mosaic of the slabs that carries band descriptions, nodata and tags."""
        p = self.profile
        width, height = int(p["width"]), int(p["height"])
        if not self.complete:
            raise AssertionError(f"journal in {self.dir} does not cover the output")
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
            for slab in self.slabs:
                src = ET.SubElement(band, "SimpleSource")
                ET.SubElement(src, "SourceFilename", relativeToVRT="1").text = str(slab["file"])
                ET.SubElement(src, "SourceBand").text = str(b)
                w, h = int(slab["col1"]) - int(slab["col0"]), int(slab["row1"]) - int(slab["row0"])
                rect = {"xOff": "0", "yOff": "0", "xSize": str(w), "ySize": str(h)}
                ET.SubElement(src, "SrcRect", **rect)
                dst = {**rect, "xOff": str(slab["col0"]), "yOff": str(slab["row0"])}
                ET.SubElement(src, "DstRect", **dst)
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
