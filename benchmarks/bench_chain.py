"""Per-step time and peak memory of the chain on demo scenes of growing size.

Each step runs as its own `tilepipe` process (as the workflow runs it), so its peak RSS is its
own. Prints one row per (size, step) and, per step, the ratio of peak RSS from the smallest to
the largest input: a step whose memory grows with the tile shows a ratio well above 1.

    .venv/bin/python benchmarks/bench_chain.py --sizes 160 320 640
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TILE, DATE = "33UXP", "2022-06-21"


def run_step(args: list[str]) -> tuple[float, float]:
    """Run one `tilepipe` command; return (seconds, peak RSS in MB)."""
    exe = Path(sys.executable).parent / "tilepipe"
    started = time.perf_counter()
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"step failed: tilepipe {' '.join(args)}\n{proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def bench_size(size: int, work: Path, method: str) -> list[tuple[str, float, float, float]]:
    """Run every per-scene step on a size x size window; return (step, s, MB, Mpx/s)."""
    demo = work / f"demo{size}"
    rows = []
    t, mb = run_step(
        ["demo", "--out", str(demo), "--size", str(size), "--tiles", TILE, "--dates", DATE]
    )
    rows.append(("demo", t, mb, size * size / t / 1e6))
    manifest, out = work / f"scenes{size}.csv", work / f"out{size}"
    out.mkdir()
    run_step(
        [
            "search",
            "--catalog",
            str(demo / "stac/catalog.json"),
            "--tiles",
            TILE,
            "--start",
            DATE,
            "--end",
            DATE,
            "--out",
            str(manifest),
        ]
    )
    common = ["--tile", TILE, "--date", DATE]
    window = f"5000,5000,{size},{size}"
    steps = {
        "download": [
            "download",
            *common,
            "--manifest",
            str(manifest),
            "--window",
            window,
            "--s2",
            str(out / "s2.tif"),
            "--scl",
            str(out / "scl.tif"),
        ],
        f"superres[{method}]": [
            "superres",
            *common,
            "--s2",
            str(out / "s2.tif"),
            "--out",
            str(out / "dr.tif"),
            "--method",
            method,
            *(["--model", str(REPO / "models/dr_demo.pt")] if method == "model" else []),
        ],
        "fields": [
            "fields",
            *common,
            "--dr",
            str(out / "dr.tif"),
            "--out",
            str(out / "fields.gpkg"),
            "--model",
            str(REPO / "models/fields_demo.pt"),
        ],
        "qc": [
            "qc",
            *common,
            "--s2",
            str(out / "s2.tif"),
            "--scl",
            str(out / "scl.tif"),
            "--dr",
            str(out / "dr.tif"),
            "--fields",
            str(out / "fields.gpkg"),
            "--out",
            str(out / "qc.json"),
        ],
    }
    for name, args in steps.items():
        t, mb = run_step(args)
        # throughput in output pixels: 10x10 per input pixel from superres on
        px = size * size * (1 if name == "download" else 100)
        rows.append((name, t, mb, px / t / 1e6))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 320, 640])
    parser.add_argument("--method", choices=["model", "bicubic"], default="model")
    args = parser.parse_args()
    results: dict[str, dict[int, tuple[float, float, float]]] = {}
    print(f"{'size':>6} {'step':<18} {'seconds':>8} {'peak MB':>8} {'Mpx/s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for step, seconds, mb, mpx in bench_size(size, Path(tmp), args.method):
                results.setdefault(step, {})[size] = (seconds, mb, mpx)
                print(f"{size:>6} {step:<18} {seconds:>8.2f} {mb:>8.0f} {mpx:>8.2f}", flush=True)
    lo, hi = min(args.sizes), max(args.sizes)
    print(f"\npeak RSS ratio {hi}² / {lo}² input pixels (area x{(hi / lo) ** 2:.0f}):")
    for step, by_size in results.items():
        print(f"  {step:<18} {by_size[hi][1] / by_size[lo][1]:.2f}")


if __name__ == "__main__":
    main()
