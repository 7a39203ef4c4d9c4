"""Cost of making a finished s2.tif-like raster a COG with overviews (``rewrite_as_cog``).

Every scene's s2.tif and scl.tif is rewritten once as a COG after it is written; this measures
that rewrite on a 4-band uint16 raster per size (a full tile is 10980²), each in a fresh
process: CPU seconds, wall seconds and the child's peak RSS.

    .venv/bin/python benchmarks/bench_cog.py --sizes 2745 5490 10980
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
import rasterio
from affine import Affine
from rasterio.windows import Window

from tilepipe.core.raster import gtiff_profile


def make_s2(path: Path, size: int) -> None:
    """A size² 4-band uint16 raster of smooth reflectance-like values, written in strips."""
    profile = gtiff_profile(
        width=size,
        height=size,
        count=4,
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0),
        nodata=0,
    )
    cols = np.arange(size)
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, 512):
            h = min(512, size - r0)
            rows = np.arange(r0, r0 + h)[:, None]
            base = 1000 + 800 * np.sin(rows / 37.0) * np.cos(cols[None, :] / 53.0)
            data = np.stack([base + 300 * b for b in range(4)]).astype(np.uint16)
            dst.write(data, window=Window(0, r0, size, h))


def rewrite(path: Path) -> tuple[float, float, float]:
    """Run rewrite_as_cog in a child process; return (wall s, CPU s, peak RSS MB)."""
    code = f"from tilepipe.core.raster import rewrite_as_cog; rewrite_as_cog({str(path)!r})"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"rewrite of {path} failed")
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - started, cpu, usage.ru_maxrss / 1024


def main() -> None:
    """Measure the rewrite per size in a temporary directory under /tmp."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2745, 5490, 10980])
    args = parser.parse_args()
    print(f"{'size':>6} {'raw MB':>7} {'wall s':>7} {'CPU s':>7} {'peak RSS MB':>11} {'MB':>6}")
    with tempfile.TemporaryDirectory(prefix="bench_cog_", dir="/tmp") as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"s2_{size}.tif"
            make_s2(path, size)
            wall, cpu, rss = rewrite(path)
            raw = size * size * 4 * 2 / 1e6
            mb = path.stat().st_size / 1e6
            print(f"{size:>6} {raw:7.0f} {wall:7.1f} {cpu:7.1f} {rss:11.0f} {mb:6.0f}")
            path.unlink()


if __name__ == "__main__":
    main()
