"""Time and peak memory of the campaign layer (``tilepipe campaign-fields``) against field count.

Two tiles across the UTM zone 33/34 edge (33UXP and 34UBU, as in the demo) each hold an
N × N grid of 200 × 150 m fields over the same ground, 34UBU's shifted by 3 m and cut at its
window's west edge (pieces under the fields step's 2000 m² dropped, as it drops them). Both
layers are written with the fields step's own writer, then ``campaign-fields`` joins them in
its own process. Prints seconds, peak RSS, fields in and out and the duplicates before and
after, then the time and memory ratios from the smallest to the largest run (a real tile holds
10⁴–10⁵ fields).

    .venv/bin/python benchmarks/bench_dedupe.py --sides 20 60 180
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

X0, Y0 = 652_000.0, 5_390_000.0  # in 33UXP and 34UBU (EPSG:32633): the grid's north-west corner
FIELD_W, FIELD_H, ROAD = 200.0, 150.0, 6.0
MIN_AREA_M2 = 2000.0  # the fields step's default fields.min_area_m2: smaller pieces are dropped


def write_layers(root: Path, side: int) -> list[str]:
    """Write both tiles' layers; return the CLI arguments naming them and their windows."""
    import numpy as np
    import shapely
    from pyproj import Transformer

    from tilepipe.core.grid import tile_grid
    from tilepipe.fields.delineate import write_fields

    step_x, step_y = FIELD_W + ROAD, FIELD_H + ROAD
    cols, rows = np.meshgrid(np.arange(side), np.arange(side))
    x, y = X0 + cols.ravel() * step_x, Y0 - rows.ravel() * step_y
    truth = shapely.box(x, y - FIELD_H, x + FIELD_W, y)
    to_34 = Transformer.from_crs("EPSG:32633", "EPSG:32634", always_xy=True)

    def moved(xy):
        return np.column_stack(to_34.transform(xy[:, 0] + 3.0, xy[:, 1]))

    g34 = tile_grid("34UBU")
    x34, _ = to_34.transform(X0 + side * step_x / 3, Y0)  # cut through the first third
    col = int((x34 - g34.ulx) // 10)
    window = (col, 0, g34.size - col, g34.size)
    extent = shapely.box(
        g34.ulx + col * 10, g34.uly - g34.size * 10, g34.ulx + g34.size * 10, g34.uly
    )
    seen = shapely.intersection(shapely.transform(truth, moved), extent)
    seen = seen[~shapely.is_empty(seen) & (shapely.area(seen) >= MIN_AREA_M2)]
    args = []
    for tile, geoms in (("33UXP", truth), ("34UBU", seen)):
        n = len(geoms)
        cols_ = {
            "field_id": np.arange(1, n + 1),
            "area_m2": shapely.area(geoms),
            "perimeter_m": shapely.length(geoms),
            "score": np.full(n, 0.9),
            "boundary_score": np.full(n, 0.1),
        }
        path = root / f"{tile}.gpkg"
        write_fields(path, list(geoms), cols_, crs=tile_grid(tile).crs, tile=tile, date="2022")
        args += ["--layer", f"{tile}={path}"]
    args += ["--window", "34UBU=" + ",".join(map(str, window))]
    return args


def run_child(args: list[str]) -> tuple[float, float]:
    """Run a command as a child; return (seconds, peak RSS in MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed: {args}\n{proc.stderr.read().decode()[-3000:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    """Benchmark campaign-fields on growing field grids."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sides", type=int, nargs="+", default=[20, 60, 180])
    args = p.parse_args(argv)
    tilepipe = [sys.executable, "-m", "tilepipe.cli"]
    print(
        f"{'fields/tile':>11} {'in':>7} {'out':>7} {'dup before':>10} {'after':>5} "
        f"{'cut before':>10} {'after':>5} {'seconds':>8} {'peak MB':>8}"
    )
    runs = []
    for side in args.sides:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            layers = write_layers(root, side)
            stats_path = root / "stats.json"
            cmd = [*tilepipe, "campaign-fields", "--season", "2022", *layers]
            cmd += ["--out", str(root / "out.gpkg"), "--parquet", str(root / "out.parquet")]
            sec, mb = run_child([*cmd, "--stats", str(stats_path)])
            s = json.loads(stats_path.read_text())
        n_in = sum(s["fields_in"].values())
        runs.append((side * side, sec, mb))
        print(
            f"{side * side:>11} {n_in:>7} {s['fields_out']:>7} {s['duplicates_before']:>10} "
            f"{s['duplicates_after']:>5} {s['cut_before']:>10} {s['cut_after']:>5} "
            f"{sec:>8.1f} {mb:>8.0f}",
            flush=True,
        )
    (n0, s0, m0), (n1, s1, m1) = runs[0], runs[-1]
    print(
        f"fields x{n1 / n0:.0f}: time x{s1 / s0:.1f} ({(s1 - s0) / (n1 - n0) * 1e6:.0f} µs per "
        f"added field of a tile), peak RSS x{m1 / m0:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
