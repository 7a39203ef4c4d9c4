"""Every GPU figure issue 17 asks for, in one run: a GPU job's fixed costs, the engine against the
model's pure forward (fp32 and bf16, ``torch.compile`` off and on), blending on the device against
on the CPU, and the two layouts of a campaign of small scenes.

    python benchmarks/bench_gpu.py --out DIR                       # on a GPU node
    python benchmarks/bench_gpu.py --device cpu --quick --out DIR  # the same, small, on the CPU

GPU time is scarce, so this is one script that measures everything once (``benchmarks/gpu/run.sh``
runs it on a lent GPU machine, see docs/benchmarks.md). Each section appends its figures to
``DIR/bench_gpu.json`` as soon as it ends: a run stopped at its time limit keeps what it measured.

- ``fixed``: what a fresh process pays before its first scene, step by step, each program in a
  fresh interpreter (median of ``--repeats``): the interpreter, ``import torch``, the steps'
  imports, the device's initialisation (CUDA context), the model's load onto the device, the
  first batch (kernel selection, cuDNN), and the first batch under ``torch.compile`` (its
  compilation). Slurm's start and an Apptainer start are not in them: this machine has neither.
- ``engine``: ``run_superres`` (read, infer, blend, write the COG with overviews) against the
  model's pure forward on the same batches, in one process with the model loaded once (as a
  warm worker runs), for the demo DR model and random SRNets of production cost, in fp32 and
  bf16, compiled and not; the forward with and without the copy of its output to the host.
- ``blend``: one window row's windows blended into the strip accumulator as the engine does
  (each batch copied to the host, then weighted and added there) against on the device (weighted
  and added into an accumulator on the device, and only the finished rows copied to the host).
- ``layouts``: ``bench_campaign.py`` on the device: a process per scene against a pool worker
  (local executor; no Slurm here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_campaign import medians, step_costs, wall
from bench_engine import forward_batches, gflop_per_mpx, make_input, model_file

from tilepipe.engine.windows import blend_weights, window_origins
from tilepipe.engine.writer import StripAccumulators
from tilepipe.models.loading import forward_raw, model_cache, resolve_device
from tilepipe.superres import load_dr, run_superres

HERE = Path(__file__).resolve().parent
PATCH, OVERLAP, SCALE, BANDS = 64, 16, 10, 4


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (timings on a GPU are otherwise of the launches)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def record(out: Path, section: str, figures: object) -> None:
    """Add one section's figures to ``out/bench_gpu.json`` (written whole, then renamed)."""
    path = out / "bench_gpu.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[section] = figures
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def machine(device: torch.device) -> dict[str, object]:
    """What the figures were measured on."""
    info: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": os.environ.get("TILEPIPE_COMMIT", ""),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": props.name,
            "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return info


# --- fixed: each program runs in a fresh interpreter; the steps are cumulative ---------------

#: The fixed-cost steps of one GPU job's process, each a program that does everything before it.
FIXED_STEPS = (
    ("interpreter", "pass"),
    ("import torch", "import torch"),
    ("steps' imports", "import tilepipe.superres, tilepipe.fields.delineate, tilepipe.cli"),
    ("device init", "d = resolve_device({device!r}); torch.zeros(1, device=d); sync(d)"),
    ("model load", "dr = load_dr('model', {model!r}, {device!r}, {precision!r}, {compile}, "
     "64, 16, '33UXP', '2022-06-21')"),
    ("first batch", "p = make_predict(dr.forward, dr.device, dr.precision); "
     "p(np.full((8, 4, 64, 64), 1000, np.float32)); sync(d)"),
)  # fmt: skip
#: What every program but the first two starts with.
PRELUDE = (
    "import numpy as np, torch\n"
    "from tilepipe.models.loading import make_predict, resolve_device\n"
    "from tilepipe.superres import load_dr\n"
    "def sync(d):\n"
    "    if d.type == 'cuda': torch.cuda.synchronize(d)\n"
)


def fixed_program(upto: int, device: str, model: str, precision: str, compile: bool) -> str:
    """The program of the first ``upto`` + 1 fixed-cost steps."""
    steps = [code for _, code in FIXED_STEPS[: upto + 1]]
    body = "\n".join(s.format(device=device, model=model, precision=precision, compile=compile)
                     for s in steps)  # fmt: skip
    return (PRELUDE if upto >= 2 else "") + body


def bench_fixed(args: argparse.Namespace, model: Path) -> dict[str, float]:
    """Median wall seconds of each fixed-cost step alone, and the compile's first batch."""
    programs = {
        name: fixed_program(k, args.device, str(model), "auto", False)
        for k, (name, _) in enumerate(FIXED_STEPS)
    }
    totals = medians(programs, args.repeats)
    steps = {**step_costs(totals), "total": totals[FIXED_STEPS[-1][0]]}
    compiled = fixed_program(len(FIXED_STEPS) - 1, args.device, str(model), "auto", True)
    try:  # once (a compile takes long); a compiler toolchain that fails keeps the rest
        with_compile = wall([sys.executable, "-c", compiled])
    except subprocess.CalledProcessError as exc:
        print(f"  torch.compile's first batch failed: {exc.stderr[-500:]}")
    else:
        steps["first batch, compiled (instead)"] = max(with_compile - totals["model load"], 0.0)
    print(f"== fixed cost of one GPU job's process on {args.device} (median wall s, each step)")
    for name, seconds in steps.items():
        print(f"  {name:<32} {seconds:7.2f}")
    return steps


# --- engine: run_superres against the pure forward, one warm process -------------------------


def time_forward(device: torch.device, fn, batches: list[np.ndarray], precision: str, host: bool):
    """Wall seconds of ``fn`` over the batches as the engine calls it; with ``host`` its output
    is copied to the host (the engine's predict), else left on the device."""
    sync(device)
    started = time.perf_counter()
    for b in batches:
        y = forward_raw(fn, b, device, precision)
        if host:
            y.float().cpu()
    sync(device)
    return time.perf_counter() - started


def model_path(work: Path, spec: str) -> Path:
    """``spec``'s model file (bench_engine.model_file), written once per run."""
    path = work / f"srnet_{spec}.pt"
    return path if spec != "demo" and path.exists() else model_file(work, spec)


def gflop(path: Path) -> float:
    """The model's GFLOP per output Mpx, counted on the CPU."""
    net = load_dr("model", path, "cpu", "fp32", False, PATCH, OVERLAP, "33UXP", "D").probe
    return round(gflop_per_mpx(net, PATCH), 1)


def engine_row(args, work: Path, batches: list[np.ndarray], spec: str, precision: str,
               compiled: bool) -> dict:  # fmt: skip
    """One model, precision and compile setting on the engine's input batches (read once):
    forward and engine seconds and their ratio."""
    device = resolve_device(args.device)
    s2 = work / "s2.tif"
    path = model_path(work, spec)
    dr = load_dr("model", path, args.device, precision, compiled, PATCH, OVERLAP, "33UXP", "D")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first = time.perf_counter()
    time_forward(device, dr.forward, batches[:1], dr.precision, True)  # warm-up, compiles
    warm_s = time.perf_counter() - first
    fwd_dev = min(time_forward(device, dr.forward, batches, dr.precision, False)
                  for _ in range(args.repeats))  # fmt: skip
    fwd_host = min(time_forward(device, dr.forward, batches, dr.precision, True)
                   for _ in range(args.repeats))  # fmt: skip
    engine = []
    for i in range(args.repeats + 1):  # the first run warms the engine's own paths
        out = work / f"dr_{i}.tif"
        stats = run_superres(s2, out, model_path=path, patch=PATCH, overlap=OVERLAP,
                             batch=args.batch, device=args.device, precision=precision,
                             compile=compiled, resume=False)  # fmt: skip
        engine.append(float(stats["seconds"]))
        out.unlink()
    eng = min(engine[1:])
    mpx = (args.size * SCALE) ** 2 / 1e6
    row = {
        "model": spec,
        "gflop_per_mpx": gflop(path),
        "precision": dr.precision,
        "compile": compiled,
        "first_batch_s": round(warm_s, 3),
        "forward_device_s": round(fwd_dev, 3),
        "forward_s": round(fwd_host, 3),
        "engine_s": round(eng, 3),
        "forward_mpx_s": round(mpx / fwd_host, 2),
        "engine_mpx_s": round(mpx / eng, 2),
        "efficiency": round(fwd_host / eng, 3),
        "copy_share": round(1 - fwd_dev / fwd_host, 3),
    }
    if device.type == "cuda":
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return row


def bench_engine(args: argparse.Namespace, work: Path, out: Path) -> list[dict]:
    """The engine table: every model, precision and compile setting asked for."""
    s2 = make_input(work / "s2.tif", args.size)
    batches = forward_batches(s2, PATCH, OVERLAP, args.batch)
    print(
        f"== engine against pure forward on {args.device}: input {args.size}² -> output "
        f"{args.size * SCALE}², patch {PATCH} overlap {OVERLAP} batch {args.batch}, "
        f"best of {args.repeats}"
    )
    head = f"{'model':>8} {'prec':>4} {'comp':>4} {'GFLOP/Mpx':>9} {'1st s':>6} {'fwd s':>7}"
    print(f"{head} {'eng s':>7} {'fwd Mpx/s':>9} {'eng Mpx/s':>9} {'eff':>6} {'copy':>5}")
    rows = []
    settings = [(p, False) for p in args.precisions] + [(p, True) for p in args.compiled]
    with model_cache():  # as a warm worker: each model file loaded once
        for spec in args.models:
            for precision, compiled in settings:
                try:
                    row = engine_row(args, work, batches, spec, precision, compiled)
                except Exception as exc:  # one setting failing (compile) keeps the others
                    row = {"model": spec, "precision": precision, "compile": compiled,
                           "error": f"{type(exc).__name__}: {str(exc)[:300]}"}  # fmt: skip
                    print(f"{spec:>8} {precision:>4} {compiled!s:>4} error: {row['error']}")
                else:
                    print(
                        f"{spec:>8} {row['precision']:>4} {compiled!s:>4} "
                        f"{row['gflop_per_mpx']:9.1f} {row['first_batch_s']:6.2f} "
                        f"{row['forward_s']:7.3f} {row['engine_s']:7.3f} "
                        f"{row['forward_mpx_s']:9.1f} {row['engine_mpx_s']:9.1f} "
                        f"{row['efficiency']:6.3f} {row['copy_share']:5.2f}"
                    )
                rows.append(row)
                record(out, "engine", rows)
    return rows


# --- blend: the strip accumulator on the host against on the device --------------------------


def blend_host(outs: list[torch.Tensor], starts: list[int], acc: StripAccumulators, n: int):
    """The engine's way: each batch's output copied to the host, weighted and added there."""
    for y, x0s in zip(outs, starts, strict=True):
        host = y.float().cpu()
        for window, x0 in zip(host, x0s, strict=True):
            acc.add(window, x0)
    return acc.rows(n).copy()


def blend_device(outs, starts, acc: torch.Tensor, weights: torch.Tensor, n: int) -> np.ndarray:
    """On the device: weighted and added into a device accumulator; the finished rows copied."""
    acc.zero_()
    for y, x0s in zip(outs, starts, strict=True):
        for window, x0 in zip(y, x0s, strict=True):
            acc[:, :, x0 : x0 + window.shape[-1]].addcmul_(window.float(), weights)
    return acc[:, :n].cpu().numpy()


def bench_blend(args: argparse.Namespace, work: Path) -> dict[str, float]:
    """ms per window row of both ways on the windows of one ``--size`` px wide row."""
    device = resolve_device(args.device)
    dr = load_dr("model", model_path(work, "demo"), args.device, "fp32", False, PATCH, OVERLAP,
                 "33UXP", "D")  # fmt: skip
    cols = window_origins(args.size, PATCH, OVERLAP)  # from half an overlap before the image
    p_out, width = PATCH * SCALE, (cols[-1] - cols[0] + PATCH) * SCALE
    rng = np.random.default_rng(0)
    x = rng.uniform(500, 3000, (len(cols), BANDS, PATCH, PATCH)).astype(np.float32)
    outs, starts = [], []
    for k in range(0, len(cols), args.batch):
        outs.append(forward_raw(dr.forward, x[k : k + args.batch], device, "fp32"))
        starts.append([(c - cols[0]) * SCALE for c in cols[k : k + args.batch]])
    weights = blend_weights(p_out, OVERLAP * SCALE)
    n = (PATCH - OVERLAP) * SCALE  # the rows a window row finishes
    host_acc = StripAccumulators((BANDS, p_out, width), weights)
    dev_acc = torch.zeros((BANDS, p_out, width), device=device)
    dev_w = torch.from_numpy(np.outer(weights, weights)).to(device)

    def timed(fn) -> float:
        sync(device)
        started = time.perf_counter()
        for _ in range(args.repeats):
            fn()
        sync(device)
        return (time.perf_counter() - started) / args.repeats * 1e3

    def host_once():
        host_acc.current.zero_()
        return blend_host(outs, starts, host_acc, n)

    a, b = host_once(), blend_device(outs, starts, dev_acc, dev_w, n)
    diff = float(np.abs(a - b).max())
    host_ms = timed(host_once)
    dev_ms = timed(lambda: blend_device(outs, starts, dev_acc, dev_w, n))
    copied = {"host": len(cols) * BANDS * p_out * p_out * 4, "device": BANDS * n * width * 4}
    figures = {
        "windows": len(cols),
        "host_ms": round(host_ms, 2),
        "device_ms": round(dev_ms, 2),
        "speedup": round(host_ms / dev_ms, 2),
        "host_copied_mb": round(copied["host"] / 1e6, 1),
        "device_copied_mb": round(copied["device"] / 1e6, 1),
        "max_abs_diff": diff,
    }
    print(
        f"== blending one window row ({len(cols)} windows of {p_out}² px, {BANDS} bands) on "
        f"{args.device}: on the host {host_ms:.1f} ms ({figures['host_copied_mb']} MB copied), "
        f"on the device {dev_ms:.1f} ms ({figures['device_copied_mb']} MB copied): "
        f"{figures['speedup']}x; largest difference {diff:.2e}"
    )
    return figures


# --- layouts: bench_campaign.py on this device ----------------------------------------------


def bench_layouts(args: argparse.Namespace) -> dict[str, str]:
    """bench_campaign.py's table on this device, with one client (the worker alone, as on a
    cluster where the clients run on the login node), and with two at the middle size."""
    texts = {}
    middle = args.layout_sizes[len(args.layout_sizes) // 2]
    for clients, sizes in ((1, args.layout_sizes), (2, [middle])):
        cmd = [sys.executable, str(HERE / "bench_campaign.py"), "--device", args.device,
               "--sizes", *map(str, sizes), "--scenes", str(args.scenes),
               "--repeats", "1", "--clients", str(clients)]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True)
        texts[f"clients {clients}"] = run.stdout + (run.stderr[-3000:] if run.returncode else "")
        print(f"== layouts, {clients} client(s) at a time\n{texts[f'clients {clients}']}")
    return texts


SECTIONS = ("fixed", "layouts", "engine", "blend")


def main() -> None:
    """Run the sections asked for, each recorded as soon as it ends."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where bench_gpu.json goes")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="in this order (the issue's figure first)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small sizes: a check of the script")
    parser.add_argument("--size", type=int, default=500, help="engine, blend: input side (px)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each measurement")
    parser.add_argument("--models", nargs="+", default=["demo", "64x6", "128x24"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--compiled", nargs="*", default=["auto"],
                        help="engine: the precisions also run under torch.compile")  # fmt: skip
    parser.add_argument("--layout-sizes", nargs="+", type=int, default=[100, 200, 500])
    parser.add_argument("--scenes", type=int, default=8, help="layouts: scenes per size")
    args = parser.parse_args()
    if args.quick:
        args.size, args.repeats, args.scenes, args.layout_sizes = 100, 1, 3, [100]
        args.models = args.models[:2]
    args.out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    info = machine(device)
    print("== machine", json.dumps(info))
    record(args.out, "machine", info)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_", dir="/tmp") as tmp:
        work = Path(tmp)
        if "fixed" in args.sections:
            record(args.out, "fixed", bench_fixed(args, model_path(work, "demo")))
        if "layouts" in args.sections:
            record(args.out, "layouts", bench_layouts(args))
        if "engine" in args.sections:
            bench_engine(args, work, args.out)
        if "blend" in args.sections:
            record(args.out, "blend", bench_blend(args, work))


if __name__ == "__main__":
    main()
