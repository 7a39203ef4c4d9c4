"""The tiled inference engine at scale: efficiency, peak memory and resume, with figures.

    python benchmarks/bench_engine.py efficiency --size 400     # engine vs pure model forward
    python benchmarks/bench_engine.py rss --sizes 1000 2000 4000 --method bicubic
    python benchmarks/bench_engine.py resume --size 400          # kill -9 at ~50 %, rerun
    python benchmarks/bench_engine.py rss --sizes 4000 --output plain   # no COG, no overviews

efficiency: windows per second of the whole engine (read + infer + blend + write, including the
journal and the final GeoTIFF) divided by windows per second of the model forward alone on the
same windows and batches, in one process, for the demo DR model and for random SRNets of
production cost (``--models demo 64x6 128x24``); also the model's GFLOP per output Mpx and the
engine's own CPU seconds per output Mpx. rss: peak RSS of `tilepipe superres` on growing inputs
(10x outputs), each in a fresh process, and the ratio from the smallest to the largest. resume:
a real `kill -9` once about half of the output is journaled, then the rerun; prints the fraction
of windows the rerun computed and whether its file is byte-identical to an uninterrupted run.
``--output`` picks the dr.tif written (efficiency, rss): ``cog-overviews`` (the default: a COG
with overviews built while rows are written), ``cog`` (a COG without overviews) or ``plain``
(the tiled GeoTIFF the engine writes, no copy after it). Everything is written under a
temporary directory in /tmp and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from tilepipe.core.raster import gtiff_profile
from tilepipe.demo.world import render_scene
from tilepipe.engine.pixels import fill_invalid, invalid_mask, read_strip
from tilepipe.engine.windows import window_origins
from tilepipe.models.loading import BANDS, load_model, make_predict, resolve_device, save_model
from tilepipe.models.nets import SRNet
from tilepipe.superres import run_superres

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "dr_demo.pt"
TILE, DATE = "33UXP", "2022-06-21"


def make_input(path: Path, size: int, motif: int = 250, height: int | None = None) -> Path:
    """Write a size x height (default size²) s2.tif tiled from one rendered demo motif."""
    height = height or size
    scene = render_scene(7, motif, motif, 1, cloud=False)
    dn = np.clip(np.rint(scene.lr * 10000), 1, 65535).astype(np.uint16)
    profile = gtiff_profile(
        width=size,
        height=height,
        count=len(BANDS),
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0),
        nodata=0,
    )
    reps = -(-size // motif)
    row = np.tile(dn, (1, 1, reps))[:, :, :size]
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, height, motif):
            h = min(motif, height - r0)
            dst.write(row[:, :h], window=rasterio.windows.Window(0, r0, size, h))
        dst.descriptions = BANDS
        dst.update_tags(TILE=TILE, DATE=DATE)
    return path


#: ``--output``: the superres flags of each kind of dr.tif.
OUTPUT_FLAGS = {
    "cog-overviews": ["--cog", "--overviews"],  # the default: a COG with streamed overviews
    "cog": ["--cog", "--no-overviews"],
    "plain": ["--no-cog", "--no-overviews"],  # the GeoTIFF the engine writes, no copy after
}


def superres_args(
    s2: Path,
    out: Path,
    method: str,
    patch: int,
    overlap: int,
    batch: int,
    output: str = "cog-overviews",
):
    """Command line of one `tilepipe superres` run."""
    exe = Path(sys.executable).parent / "tilepipe"
    args = [str(exe), "superres", "--tile", TILE, "--date", DATE, "--s2", str(s2)]
    args += ["--out", str(out), "--method", method, "--device", "cpu"]
    args += ["--patch", str(patch), "--overlap", str(overlap), "--batch", str(batch)]
    args += OUTPUT_FLAGS[output]
    return args + (["--model", str(MODEL)] if method == "model" else [])


def run_cli(args: list[str]) -> tuple[float, float, dict]:
    """Run a command; return (seconds, peak RSS in MB, the engine's stats from its log).

    The stats gain ``cpu_seconds`` (user + system of the process): on a shared machine CPU
    time, unlike wall time, does not depend on what else runs.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{err}")
    stats = stats_of(err) | {"cpu_seconds": usage.ru_utime + usage.ru_stime}
    return seconds, usage.ru_maxrss / 1024, stats


def stats_of(log: str) -> dict:
    """The JSON stats line `tilepipe superres` logs when done."""
    return json.loads(log.split("superres done: ")[1].splitlines()[0])


def forward_batches(s2: Path, patch: int, overlap: int, batch: int) -> list[np.ndarray]:
    """The engine's input batches (same windows, same grouping per window row), in memory."""
    batches = []
    with rasterio.open(s2) as src:
        rows = window_origins(src.height, patch, overlap)
        cols = window_origins(src.width, patch, overlap)
        for r in rows:
            strip = read_strip(src, r, cols, patch)
            bad = invalid_mask(strip, 0)
            spans = [slice(c - cols[0], c - cols[0] + patch) for c in cols]
            wins = [fill_invalid(strip[:, :, cs], bad[:, cs]) for cs in spans]
            batches += [np.stack(wins[i : i + batch]) for i in range(0, len(wins), batch)]
    return batches


def model_file(work: Path, spec: str) -> Path:
    """``demo`` (the demo DR model) or ``FxD``: a randomly initialised SRNet, F features, D layers.

    Wider, deeper SRNets stand in for production DR networks, whose forward pass costs far more
    per pixel than the tiny demo model's (the engine's own cost per pixel is the same).
    """
    if spec == "demo":
        return MODEL
    features, depth = (int(v) for v in spec.split("x"))
    meta = json.loads(MODEL.with_suffix(".json").read_text())
    kwargs = {**meta["arch_kwargs"], "features": features, "depth": depth}
    torch.manual_seed(0)
    net = SRNet(**kwargs)
    torch.nn.init.normal_(net.body[-1].weight, std=1e-3)
    path = work / f"srnet_{spec}.pt"
    save_model(net, path, {**meta, "id": f"srnet-{spec}", "arch_kwargs": kwargs})
    return path


def time_forward(predict, batches: list[np.ndarray]) -> tuple[float, float]:
    """Wall and CPU seconds of the model's pure forward over the batches (the engine's bound)."""
    t0, c0 = time.perf_counter(), time.process_time()
    for b in batches:
        predict(b)
    return time.perf_counter() - t0, time.process_time() - c0


def gflop_per_mpx(net: torch.nn.Module, patch: int) -> float:
    """The model's convolution FLOPs per output megapixel (torch's FLOP counter, one window)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, len(BANDS), patch, patch)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        out = net(x)
    return counter.get_total_flops() / (out.shape[-1] * out.shape[-2]) / 1e3


def bench_efficiency(args: argparse.Namespace, work: Path) -> None:
    """Engine windows/s over pure forward windows/s (DR model on CPU), per model."""
    s2 = make_input(work / "s2.tif", args.size)
    dev = resolve_device("cpu")
    batches = forward_batches(s2, args.patch, args.overlap, args.batch)
    n_windows = sum(len(b) for b in batches)
    out_mpx = (args.size * 10) ** 2 / 1e6
    print(
        f"input {args.size}² -> output {args.size * 10}² ({out_mpx:.1f} Mpx, 4 bands), "
        f"{n_windows} windows, patch {args.patch} overlap {args.overlap} batch {args.batch}, "
        f"{torch.get_num_threads()} torch threads, best of {args.repeats}, "
        f"journal {'on' if args.resume else 'off'}"
    )
    head = f"{'model':>12} {'GFLOP/Mpx':>9} {'forward s':>9} {'engine s':>8} {'fwd Mpx/s':>9}"
    print(f"{head} {'eng Mpx/s':>9} {'efficiency':>10} {'CPU ratio':>9} {'overhead CPU s/Mpx':>18}")
    for spec in args.models:
        path = model_file(work, spec)
        model = load_model(path, expect_bands=BANDS, expect_scale=10, device=dev)
        net, divide = model.module, model.divide
        predict = make_predict(lambda x, n=net, d=divide: (n(x / d) * d).clamp_(1.0, 65535.0), dev)
        predict(batches[0])  # warm-up
        fwd, eng = [], []
        for i in range(args.repeats):  # alternated, so that both see the same machine
            fwd.append(time_forward(predict, batches))
            c0 = time.process_time()
            out = work / f"dr{i}.tif"
            stats = run_superres(
                s2,
                out,
                model_path=path,
                patch=args.patch,
                overlap=args.overlap,
                batch=args.batch,
                device="cpu",
                resume=args.resume,
                cog=args.output != "plain",
                overviews=args.output == "cog-overviews",
            )
            assert stats["windows"] == n_windows, (stats["windows"], n_windows)
            eng.append((float(stats["seconds"]), time.process_time() - c0))
            out.unlink()
        (t_f, c_f), (t_e, c_e) = min(fwd), min(eng)
        print(
            f"{spec:>12} {gflop_per_mpx(net, args.patch):9.1f} {t_f:9.2f} {t_e:8.2f} "
            f"{out_mpx / t_f:9.2f} {out_mpx / t_e:9.2f} {t_f / t_e:10.3f} {c_f / c_e:9.3f} "
            f"{(c_e - c_f) / out_mpx:18.3f}"
        )


def parse_size(text: str) -> tuple[int, int]:
    """``N`` (N x N) or ``WxH`` in 10 m pixels."""
    w, _, h = text.partition("x")
    return int(w), int(h or w)


def bench_rss(args: argparse.Namespace, work: Path) -> None:
    """Peak RSS of `tilepipe superres` per input size, each in a fresh process."""
    print(f"method {args.method}, patch {args.patch} overlap {args.overlap} batch {args.batch}")
    print(f"output {args.output}")
    head = f"{'input':>10} {'output':>12} {'wall s':>7} {'CPU s':>7} {'Mpx/CPU s':>9}"
    print(f"{head} {'peak RSS MB':>11} {'panels':>6} {'finish s':>8} {'file MB':>8}")
    peaks = []
    for text in args.sizes:
        w, h = parse_size(text)
        s2 = make_input(work / f"s2_{text}.tif", w, height=h)
        out = work / f"dr_{text}.tif"
        cmd = superres_args(s2, out, args.method, args.patch, args.overlap, args.batch, args.output)
        seconds, mb, stats = run_cli(cmd)
        peaks.append(mb)
        cpu = stats["cpu_seconds"]
        print(
            f"{w:>5}x{h:<4} {w * 10:>6}x{h * 10:<5} {seconds:7.1f} {cpu:7.1f} "
            f"{w * h / 1e4 / cpu:9.2f} {mb:11.0f} {stats['panels']:>6} "
            f"{stats['finish_seconds']:8.1f} {out.stat().st_size / 1e6:8.0f}"
        )
        out.unlink()
        s2.unlink()
    print(f"peak RSS ratio last/first input: {peaks[-1] / peaks[0]:.2f}")


def journaled_fraction(parts: Path, width: int, height: int) -> float:
    """Fraction of the output area journaled so far."""
    try:
        lines = (parts / "journal.jsonl").read_text().splitlines()[1:]
    except FileNotFoundError:
        return 0.0
    area = 0
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            break
        area += (rec["col1"] - rec["col0"]) * (rec["row1"] - rec["row0"])
    return area / (width * height)


def bench_resume(args: argparse.Namespace, work: Path) -> None:
    """kill -9 once ~50 % of the output is journaled, rerun; fraction of windows recomputed."""
    s2 = make_input(work / "s2.tif", args.size)
    whole, dr = work / "whole.tif", work / "dr.tif"
    cmd = superres_args(s2, dr, args.method, args.patch, args.overlap, args.batch)
    t_full, _, full = run_cli(
        superres_args(s2, whole, args.method, args.patch, args.overlap, args.batch)
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    progress = {"done": 0.0}

    def follow() -> None:
        """Keep the killed run's last progress line ("done/total windows (NN%)")."""
        for line in proc.stderr:
            if " windows (" in line:
                progress["done"] = float(line.rsplit("(", 1)[1].split("%")[0]) / 100

    threading.Thread(target=follow, daemon=True).start()
    side = args.size * 10
    parts = Path(f"{dr}.parts")
    while proc.poll() is None and journaled_fraction(parts, side, side) < args.kill_at:
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    at = journaled_fraction(parts, side, side)
    t_rerun, _, again = run_cli(cmd)
    same = dr.read_bytes() == whole.read_bytes()
    print(f"input {args.size}² ({args.method}): {full['windows']} windows uninterrupted")
    print(f"  kill -9 with {at:.0%} of the output journaled")
    print(f"  (the killed run had last reported {progress['done']:.0%} of its windows done)")
    print(f"  rerun computed {again['windows']} windows ({again['windows_resumed']} resumed)")
    print(f"  fraction recomputed: {again['windows'] / full['windows']:.3f}")
    print(f"  rerun {t_rerun:.1f} s vs uninterrupted {t_full:.1f} s; byte-identical output: {same}")


def main() -> None:
    """Parse arguments and run one benchmark (or all of them) in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["efficiency", "rss", "resume", "all"])
    parser.add_argument("--size", type=int, default=400, help="input side (10 m px)")
    parser.add_argument("--sizes", nargs="+", default=["1000", "2000", "4000"], help="N or WxH")
    parser.add_argument("--method", choices=["model", "bicubic"], default="bicubic")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--kill-at", type=float, default=0.5)
    parser.add_argument(
        "--output",
        choices=sorted(OUTPUT_FLAGS),
        default="cog-overviews",
        help="efficiency, rss: the kind of dr.tif written",
    )
    parser.add_argument(
        "--no-resume", dest="resume", action="store_false", help="efficiency: no journal"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["demo", "64x6", "128x24"],
        help="efficiency: 'demo' and/or FxD (random SRNet, F features, D layers)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_engine_", dir="/tmp") as tmp:
        work = Path(tmp)
        for what in ("efficiency", "rss", "resume") if args.what == "all" else (args.what,):
            print(f"== {what}")
            {"efficiency": bench_efficiency, "rss": bench_rss, "resume": bench_resume}[what](
                args, work
            )


if __name__ == "__main__":
    main()
