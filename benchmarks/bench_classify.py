"""Time and peak memory of per-field aggregation, classification and the class raster.

Writes synthetic 64-band float32 embeddings of growing size with a grid of square fields, trains
a small CatBoost model once on the smallest, then runs `tilepipe classify` (per-field means,
window by window) and `tilepipe class-raster` (per-pixel classes, block by block) as their own
processes. Prints seconds, peak RSS and the embeddings' size per run, then per step the ratio of
peak RSS from the smallest to the largest input: bounded memory shows a ratio near 1 while the
input grows by the square of the size ratio.

    .venv/bin/python benchmarks/bench_classify.py --sizes 256 512 1024
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyogrio.raw
import rasterio
import shapely
from affine import Affine

from tilepipe.classify.train import train_classifier
from tilepipe.core.raster import gtiff_profile

TILE, CRS, DIM, FIELD, GAP = "33UXP", "EPSG:32633", 64, 16, 4
ORIGIN = (600000.0, 5400000.0)


# A small interpreter starts the step and reports its peak RSS: Linux carries a process's RSS
# high-water mark across fork + exec, so a step forked straight from this (large) process would
# report this process's memory, not its own.
_MEASURE = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n"
)


def run_step(args: list[str], gdal_cache_mb: int) -> tuple[float, float]:
    """Run one `tilepipe` command in a fresh process; return (seconds, its peak RSS in MB).

    GDAL's block cache (default 5 % of RAM) is capped at ``gdal_cache_mb`` so the figure shows
    tilepipe's own memory, not blocks GDAL keeps around.
    """
    exe = Path(sys.executable).parent / "tilepipe"
    env = {**os.environ, "GDAL_CACHEMAX": str(gdal_cache_mb)}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(exe), *args], capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - started
    code, maxrss = (int(v) for v in proc.stdout.split())
    if code != 0:
        raise SystemExit(f"step failed: tilepipe {' '.join(args)}\n{proc.stderr}")
    return seconds, maxrss / 1024


def field_grid(size: int) -> tuple[list, list[int]]:
    """Square fields every FIELD + GAP pixels over a size x size grid, with a class each."""
    step = FIELD + GAP
    boxes, classes = [], []
    for r in range(0, size - FIELD, step):
        for c in range(0, size - FIELD, step):
            left, top = ORIGIN[0] + c * 10, ORIGIN[1] - r * 10
            boxes.append(shapely.box(left, top - FIELD * 10, left + FIELD * 10, top))
            classes.append((r // step + c // step) % 3)
    return boxes, classes


def write_embeddings(path: Path, size: int) -> float:
    """Class centroid + noise per pixel, written in strips; return the file's size in MB."""
    rng = np.random.default_rng(size)
    centroids = np.random.default_rng(0).normal(0, 1, size=(3, DIM)).astype(np.float32)
    transform = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    profile = gtiff_profile(
        width=size, height=size, count=DIM, dtype="float32", crs=CRS, transform=transform
    )
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, 256):
            h = min(256, size - r0)
            rows = (np.arange(r0, r0 + h) // (FIELD + GAP))[:, None]
            cols = (np.arange(size) // (FIELD + GAP))[None, :]
            cls = (rows + cols) % 3
            data = centroids[cls] + rng.normal(0, 0.5, size=(h, size, DIM)).astype(np.float32)
            dst.write(np.moveaxis(data, 2, 0), window=rasterio.windows.Window(0, r0, size, h))
    return path.stat().st_size / 1e6


def write_fields(path: Path, boxes: list, classes: list[int] | None, layer: str) -> None:
    n = len(boxes)
    columns = {"field_id": np.arange(1, n + 1, dtype=np.int64)}
    if classes is None:
        columns["area_m2"] = np.array([b.area for b in boxes])
    else:
        columns["crop"] = np.array([f"class{c}" for c in classes], dtype=object)
    columns["tile"] = np.array([TILE] * n, dtype=object)
    pyogrio.raw.write(
        path,
        shapely.to_wkb(np.array(boxes, dtype=object)),
        list(columns.values()),
        list(columns),
        layer=layer,
        driver="GPKG",
        geometry_type="Polygon",
        crs=CRS,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--gdal-cache-mb", type=int, default=64)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i, size in enumerate(sorted(args.sizes)):
            emb = work / f"emb{size}.tif"
            mb_in = write_embeddings(emb, size)
            boxes, classes = field_grid(size)
            if i == 0:
                write_fields(work / "labels.gpkg", boxes, classes, "labels")
                train_classifier(
                    work / "labels.gpkg",
                    {TILE: str(emb)},
                    work / "model.cbm",
                    work / "metrics.json",
                    iterations=20,
                    max_pixels_per_field=20,
                )
            write_fields(work / f"fields{size}.gpkg", boxes, None, "fields")
            common = ["--tile", TILE, "--embeddings", str(emb), "--model", str(work / "model.cbm")]
            t, mb = run_step(
                [
                    "classify",
                    *common,
                    "--date",
                    "2022-06-21",
                    "--fields",
                    str(work / f"fields{size}.gpkg"),
                    "--out",
                    str(work / f"out{size}.gpkg"),
                ],
                args.gdal_cache_mb,
            )
            rows.append(("classify", size, len(boxes), mb_in, t, mb))
            t, mb = run_step(
                ["class-raster", *common, "--year", "2022", "--out", str(work / f"c{size}.tif")],
                args.gdal_cache_mb,
            )
            rows.append(("class-raster", size, len(boxes), mb_in, t, mb))
    print(f"{'step':<13}{'size':>6}{'fields':>8}{'input MB':>10}{'s':>8}{'peak MB':>9}{'Mpx/s':>8}")
    for step, size, n, mb_in, t, mb in rows:
        rate = size * size / t / 1e6
        print(f"{step:<13}{size:>6}{n:>8}{mb_in:>10.0f}{t:>8.2f}{mb:>9.0f}{rate:>8.2f}")
    for step in ("classify", "class-raster"):
        mine = [r for r in rows if r[0] == step]
        lo, hi = mine[0], mine[-1]
        print(
            f"{step}: input x{hi[3] / lo[3]:.1f}, peak RSS x{hi[5] / lo[5]:.2f}, "
            f"time x{hi[4] / lo[4]:.1f}"
        )


if __name__ == "__main__":
    main()
