"""Peak memory and time of block-wise field polygonisation against the probability raster size.

For each side length, a probability raster of the demo world's field layout (extent plus a
boundary band, 1 m pixels) is written, then :func:`tilepipe.fields.polygons.delineate` runs on it in
its own process, once with ``--block`` px blocks and once as a single block (the whole raster
in memory, as before block-wise polygonisation). Prints seconds, peak RSS and fields per run,
and the ratio of peak RSS from the smallest to the largest raster: bounded memory shows a
ratio near 1 for the block-wise runs while the single block grows with the area.

    .venv/bin/python benchmarks/bench_polygons.py --sizes 1024 2048 4096 8192 --block 512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_raster(path: Path, size: int, seed: int) -> None:
    """Write a size x size probability raster of the demo field layout (one process)."""
    import numpy as np
    from affine import Affine
    from skimage.morphology import dilation, disk
    from skimage.segmentation import find_boundaries

    from tilepipe.demo.world import field_layout
    from tilepipe.fields.polygons import write_probabilities

    ids, _ = field_layout(seed, size, size)
    extent = (ids > 0).astype(np.float32)
    edges = find_boundaries(ids, mode="inner") & (ids > 0)
    boundary = dilation(edges.astype(np.uint8), disk(1)).astype(np.float32) * extent
    transform = Affine(1.0, 0.0, 600000.0, 0.0, -1.0, 5300000.0)
    write_probabilities(path, {"extent": extent, "boundary": boundary}, transform, "EPSG:32633")


def polygonise(path: Path, block: int) -> None:
    """Run delineate on ``path`` and print its stats as JSON (one process)."""
    from tilepipe.fields.polygons import Params, delineate

    table = delineate(path, Params(block=block, halo=32, min_area_m2=2000))
    print(json.dumps(table.stats))


def run_child(args: list[str]) -> tuple[float, float, str]:
    """Run this script as a child; return (seconds, peak RSS in MB, stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed: {args}\n{proc.stderr.read().decode()}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, out


def main(argv: list[str] | None = None) -> int:
    """Benchmark, or run one child step (--child make|poly)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--block", type=int, default=512)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument(
        "--single-max", type=int, default=4096, help="largest side also run as a single block"
    )
    p.add_argument("--child", choices=["make", "poly"], help=argparse.SUPPRESS)
    p.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "make":
        make_raster(args.path, args.size, args.seed)
        return 0
    if args.child == "poly":
        polygonise(args.path, args.block)
        return 0

    print(f"{'side px':>8} {'Mpx':>6} {'mode':>12} {'seconds':>8} {'peak MB':>8} {'fields':>7}")
    peaks: dict[str, list[float]] = {"blocks": [], "single": []}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"prob{size}.tif"
            run_child(["--child", "make", "--path", str(path), "--size", str(size)])
            modes = [("blocks", args.block), ("single", size + 16 - size % 16)]
            for mode, block in modes[: 2 if size <= args.single_max else 1]:
                sec, mb, out = run_child(
                    ["--child", "poly", "--path", str(path), "--block", str(block)]
                )
                stats = json.loads(out.strip().splitlines()[-1])
                peaks[mode].append(mb)
                label = f"{mode} {block}" if mode == "blocks" else "single"
                print(
                    f"{size:>8} {size * size / 1e6:>6.1f} {label:>12} {sec:>8.1f} {mb:>8.0f} "
                    f"{stats['fields']:>7}",
                    flush=True,
                )
            path.unlink()
    for mode, values in peaks.items():
        last = args.sizes[len(values) - 1]
        print(
            f"peak RSS {mode}: x{values[-1] / values[0]:.2f} from {args.sizes[0]}² to "
            f"{last}² px (area x{(last / args.sizes[0]) ** 2:.0f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
