"""The engine's efficiency at the model's own scale: a x4 torch.export model beside the x10 demo.

    python benchmarks/bench_scale.py --out-side 4000 --repeats 2

For each model the tiling engine (``run_tiled``: read, infer, blend, journal, final GeoTIFF) runs
at the model's scale on an s2.tif sized so that the output is ``--out-side``² (4 bands uint16),
and the model forward alone runs on the same windows and batches in the same process. Printed:
output Mpx/s of both, their ratio (the engine's efficiency) and the CPU-time ratio, which does
not depend on what else the machine runs. Models: ``models/dr_demo.pt`` (x10, the class route)
and a randomly initialised x4 SRNet exported with ``torch.export`` (``.pt2``, dynamic batch,
the engine's window traced). Everything is written under a temporary directory, then removed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from bench_engine import MODEL, forward_batches, make_input, time_forward

from tilepipe.core.checksum import sha256_file
from tilepipe.engine.tiling import run_tiled
from tilepipe.models.loading import BANDS, EXPORT, check_patch, load_model, make_predict
from tilepipe.models.nets import SRNet


def export_x4(work: Path, patch: int) -> Path:
    """A random x4 SRNet (the demo's width and depth) as a .pt2 with a dynamic batch."""
    torch.manual_seed(0)
    net = SRNet(scale=4, features=32, depth=3, gain=10.0).eval()
    torch.nn.init.normal_(net.body[-1].weight, std=1e-3)
    x = torch.rand(2, len(BANDS), patch, patch)
    program = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = work / "srnet_x4.pt2"
    torch.export.save(program, str(path))
    meta = {"id": "srnet-x4-random", "architecture": EXPORT, "bands_in": list(BANDS)}
    meta |= {"bands_out": list(BANDS), "scale": 4, "normalise": {"divide": 10000.0}}
    path.with_suffix(".json").write_text(json.dumps({**meta, "sha256": sha256_file(path)}))
    return path


def run_engine(s2: Path, out: Path, predict, scale: int, args: argparse.Namespace) -> dict:
    """One engine run at ``scale``, as superres runs it (uint16, nodata 0, journal on)."""
    return run_tiled(
        s2,
        out,
        predict,
        scale=scale,
        out_bands=len(BANDS),
        out_dtype="uint16",
        patch=args.patch,
        overlap=args.overlap,
        batch=args.batch,
        nodata_out=0,
        src_nodata=0,
        band_descriptions=list(BANDS),
        resume=True,
    )


def bench(path: Path, work: Path, args: argparse.Namespace) -> str:
    """Forward-only and engine output Mpx/s of one model; the table row."""
    model = load_model(path, device="cpu")
    scale = int(model.meta["scale"])
    check_patch(model.meta, args.patch, args.overlap)
    size = args.out_side // scale
    s2 = make_input(work / f"s2_{scale}.tif", size)
    batches = forward_batches(s2, args.patch, args.overlap, args.batch)
    net, divide = model.module, model.divide
    predict = make_predict(lambda x: net(x / divide) * divide, model.device)
    predict(batches[0])  # warm-up
    fwd, eng = [], []
    for i in range(args.repeats):  # alternated, so that both see the same machine
        fwd.append(time_forward(predict, batches))
        t0, c0 = time.perf_counter(), time.process_time()
        out = work / f"dr{scale}_{i}.tif"
        run_engine(s2, out, predict, scale, args)
        eng.append((time.perf_counter() - t0, time.process_time() - c0))
        out.unlink()
    (t_f, c_f), (t_e, c_e) = min(fwd), min(eng)
    mpx = (size * scale) ** 2 / 1e6
    return (
        f"{model.model_id:>18} {model.meta['architecture']:>12} x{scale:<3} {size:>5}² "
        f"{len(batches):>7} {mpx / t_f:9.2f} {mpx / t_e:9.2f} {t_f / t_e:10.3f} {c_f / c_e:9.3f}"
    )


def main() -> None:
    """Parse arguments and print one row per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-side", type=int, default=4000, help="output side (px)")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(
        f"output {args.out_side}² (4 bands uint16), patch {args.patch} overlap {args.overlap} "
        f"batch {args.batch}, {torch.get_num_threads()} torch threads, best of {args.repeats}"
    )
    head = f"{'model':>18} {'route':>12} {'scale':<4} {'input':>6} {'batches':>7}"
    print(f"{head} {'fwd Mpx/s':>9} {'eng Mpx/s':>9} {'efficiency':>10} {'CPU ratio':>9}")
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        work = Path(tmp)
        for path in (MODEL, export_x4(work, args.patch)):
            print(bench(path, work, args), flush=True)


if __name__ == "__main__":
    main()
