"""Download throughput through the loopback HTTP server: an AOI window versus the whole asset.

Writes one scene of Cloud-Optimised GeoTIFFs (B02, B03, B04, B08 at 10 m, SCL at 20 m) of
``--size`` pixels on tile 33UXP's grid (a stand-in for the 10980 px tile, which would not fit
a quick run), serves it from tests/loopback.py on 127.0.0.1, and runs `download_scene` (real
rasterio /vsicurl/ range reads) for a ``--window`` px AOI window and for the whole asset.
Prints seconds, bytes served, MB/s and output Mpx/s per case, then the ratios.

    .venv/bin/python benchmarks/bench_download.py --size 2048 --window 256
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.loopback import Loopback  # noqa: E402
from tilepipe.acquire.download import download_scene  # noqa: E402
from tilepipe.acquire.transfer import RetryPolicy  # noqa: E402
from tilepipe.core.grid import tile_grid  # noqa: E402

TILE, DATE = "33UXP", "2022-06-21"


def write_cog(path: Path, data: np.ndarray, transform: Affine, crs: str) -> None:
    """One single-band COG (deflate, 256 px blocks, overviews)."""
    profile = {
        "driver": "COG",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": 0,
        "compress": "deflate",
        "blocksize": 256,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[None])


def write_scene(root: Path, size: int) -> dict[str, str]:
    """COGs of one scene covering ``size`` px from the tile's corner; return asset paths."""
    grid = tile_grid(TILE)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    scene = root / "sentinel-2-l2a" / "bench"
    scene.mkdir(parents=True)
    rel = {}
    for k, band in enumerate(("B02", "B03", "B04", "B08")):
        field = 1500 + 800 * np.sin(xx / (37 + 5 * k)) * np.cos(yy / 53)
        dn = (field + rng.normal(0, 60, field.shape) + 1000).clip(1, 65535).astype(np.uint16)
        write_cog(scene / f"{band}.tif", dn, grid.transform, grid.crs)
        rel[band] = f"sentinel-2-l2a/bench/{band}.tif"
    scl = rng.choice(np.array([4, 5, 8], dtype=np.uint8), size=(size // 2, size // 2))
    write_cog(scene / "SCL.tif", scl, grid.transform * Affine.scale(2), grid.crs)
    rel["SCL"] = "sentinel-2-l2a/bench/SCL.tif"
    return rel


def run_case(server: Loopback, row: dict, window, out: Path, connections: int) -> dict:
    """Download once; return seconds, bytes served and output pixels."""
    server.reset()
    started = time.perf_counter()
    result = download_scene(
        row,
        out / "s2.tif",
        out / "scl.tif",
        window=window,
        policy=RetryPolicy(),
        connections=connections,
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "bytes": server.stats()["bytes_sent"],
        "pixels": int(result["width"]) * int(result["height"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="asset side in 10 m pixels")
    parser.add_argument("--window", type=int, default=256, help="AOI window side in pixels")
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs per case")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "stac"
        rel = write_scene(root, args.size)
        server = Loopback(root)
        try:
            row = {
                "tile": TILE,
                "date": DATE,
                "item_id": "bench",
                "collection": "sentinel-2-l2a",
                "baseline": "05.09",
                "boa_offset_dn": "1000",
                "offset_source": "raster:bands",
                "assets": json.dumps({b: server.file_url(r) for b, r in rel.items()}),
            }
            off = (args.size - args.window) // 2
            cases = {
                f"window {args.window}px": (off, off, args.window, args.window),
                f"whole {args.size}px": (0, 0, args.size, args.size),
            }
            results = {}
            print(f"{'case':>16} {'seconds':>8} {'MB served':>10} {'MB/s':>7} {'Mpx/s':>7}")
            for name, window in cases.items():
                runs = []
                for i in range(args.repeat):
                    out = Path(tmp) / f"out-{len(results)}-{i}"
                    out.mkdir()
                    runs.append(run_case(server, row, window, out, args.connections))
                best = min(runs, key=lambda r: r["seconds"])
                results[name] = best
                mb = best["bytes"] / 1e6
                print(
                    f"{name:>16} {best['seconds']:8.3f} {mb:10.2f} "
                    f"{mb / best['seconds']:7.1f} {best['pixels'] / best['seconds'] / 1e6:7.2f}"
                )
        finally:
            server.close()
    window_case, whole_case = results.values()
    print(
        f"whole / window: {whole_case['bytes'] / window_case['bytes']:.1f}x the bytes, "
        f"{whole_case['seconds'] / window_case['seconds']:.1f}x the time, for "
        f"{whole_case['pixels'] / window_case['pixels']:.0f}x the pixels"
    )


if __name__ == "__main__":
    main()
