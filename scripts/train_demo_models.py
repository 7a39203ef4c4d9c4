#!/usr/bin/env python
"""Train the two small demo models (SRNet for DR, FieldNet for fields) on synthetic scenes.

Scenes come from ``tilepipe.demo.render_scene``; held-out scenes (other seeds) measure SRNet
against bicubic (L1, PSNR) and FieldNet's interior IoU, on the true 1 m image and on SRNet's
output (what the fields step really sees). Writes ``dr_demo.pt/.json`` and
``fields_demo.pt/.json`` into ``--out``, with the training recipe and figures in the sidecars.

    python scripts/train_demo_models.py --out models/ --steps 600 --seed 0 --scenes 8
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label
from skimage.morphology import dilation, disk, erosion

from tilepipe.demo import render_scene
from tilepipe.models import BANDS, FieldNet, SRNet, resolve_device, save_model

SCALE = 10
DIVIDE = 10000.0
SR_KWARGS = {"bands": 4, "scale": SCALE, "features": 32, "depth": 3, "gain": 10.0}
#: Loss weight of background pixels within GAP_PX of a field interior: the gaps between
#: fields are thin, and one missed gap pixel merges two fields into one polygon.
GAP_WEIGHT, GAP_PX = 10.0, 6
#: Share of FieldNet training crops taken from SRNet output rather than the 1 m truth.
P_SR = 0.8
FIELD_KWARGS = {"bands": 4, "features": 24, "dilations": [1, 2, 4, 8, 1], "gain": 10.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; defaults train both models in a few minutes on 2 CPU cores."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("models"), help="output folder")
    p.add_argument("--steps", type=int, default=600, help="optimiser steps per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenes", type=int, default=8, help="training scenes")
    p.add_argument("--eval-scenes", type=int, default=2, help="held-out scenes")
    p.add_argument("--scene-size", type=int, default=96, help="scene side in 10 m pixels")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return p.parse_args(argv)


def field_target(field_ids: np.ndarray, erode: int = 2) -> np.ndarray:
    """Field-interior mask: field pixels eroded by ``erode`` px so neighbours stay apart."""
    return erosion((field_ids > 0).astype(np.uint8), disk(erode)).astype(np.float32)


def gap_weight(mask: np.ndarray) -> np.ndarray:
    """Per-pixel BCE weight: GAP_WEIGHT on background near fields (roads, hedges), else 1."""
    near = dilation(mask.astype(np.uint8), disk(GAP_PX)).astype(bool) & (mask < 0.5)
    return np.where(near, GAP_WEIGHT, 1.0).astype(np.float32)


def render(seeds: list[int], size: int) -> list[dict[str, np.ndarray]]:
    """Render cloud-free scenes (alternating seasons) as float32 arrays for training/eval."""
    out = []
    for i, s in enumerate(seeds):
        sc = render_scene(s, size, size, i % 2, scale=SCALE, cloud=False)
        mask = field_target(sc.field_ids_hr)
        out.append(
            {
                "lr": sc.lr,
                "hr": sc.hr,
                "mask": mask,
                "weight": gap_weight(mask),
                "n_fields": len(sc.field_class),
            }
        )
    return out


def augment(*arrays: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Apply one random flip/rot90 to all arrays alike (last two axes)."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        out.append(np.ascontiguousarray(a[..., ::-1] if flip else a))
    return out


def sr_batch(scenes, rng, batch: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random aligned (lr, hr) crops: lr ``crop`` px, hr ``crop * SCALE`` px."""
    xs, ys = [], []
    for _ in range(batch):
        sc = scenes[int(rng.integers(len(scenes)))]
        h, w = sc["lr"].shape[1:]
        r, c = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        lr = sc["lr"][:, r : r + crop, c : c + crop]
        hr = sc["hr"][:, r * SCALE : (r + crop) * SCALE, c * SCALE : (c + crop) * SCALE]
        lr, hr = augment(lr, hr, rng=rng)
        xs.append(lr)
        ys.append(hr)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def field_batch(scenes, rng, batch: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (image, [mask, weight]) crops at 1 m; the image is SRNet output or the truth."""
    xs, ys = [], []
    for _ in range(batch):
        sc = scenes[int(rng.integers(len(scenes)))]
        img = sc["sr"] if "sr" in sc and rng.random() < P_SR else sc["hr"]
        h, w = img.shape[1:]
        r, c = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        win = (slice(r, r + crop), slice(c, c + crop))
        x, y, wt = augment(img[:, win[0], win[1]], sc["mask"][win], sc["weight"][win], rng=rng)
        xs.append(x)
        ys.append(np.stack([y, wt]))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def weighted_bce(logits: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
    """BCE on channel 0 of ``target_weight``, weighted per pixel by its channel 1."""
    return F.binary_cross_entropy_with_logits(
        logits, target_weight[:, :1], weight=target_weight[:, 1:]
    )


def count_fields(prob: np.ndarray, min_area_px: int = 2000) -> int:
    """Fields as the fields step finds them: 4-connected components of p > 0.5, >= min area."""
    sizes = np.bincount(label(prob > 0.5, connectivity=1).ravel())[1:]
    return int((sizes >= min_area_px).sum())


def train(net, batches, loss_fn, steps: int, lr: float, device: torch.device) -> torch.nn.Module:
    """Adam with a one-cycle schedule; bf16 autocast on CUDA only. Returns the net in eval mode."""
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    loss_val = float("nan")
    for step in range(steps):
        x, y = (t.to(device) for t in batches())
        with torch.autocast(
            device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"
        ):
            loss = loss_fn(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_val = loss.item()
        if step % max(steps // 5, 1) == 0 or step == steps - 1:
            print(f"  step {step + 1}/{steps} loss {loss_val:.5f}", flush=True)
    return net.eval()


@torch.inference_mode()
def infer(net, x: np.ndarray, device: torch.device) -> np.ndarray:
    """Whole-array inference (eval scenes are small)."""
    return net(torch.from_numpy(x)[None].to(device)).float()[0].cpu().numpy()


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB for reflectance (peak 1.0)."""
    mse = float(np.mean((pred - ref) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    union = np.logical_or(pred, ref).sum()
    return float(np.logical_and(pred, ref).sum() / union) if union else 1.0


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate and save both demo models."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = resolve_device(args.device)
    train_seeds = [args.seed * 1000 + i for i in range(args.scenes)]
    eval_seeds = [args.seed * 1000 + 500 + i for i in range(args.eval_scenes)]
    scenes, held = render(train_seeds, args.scene_size), render(eval_seeds, args.scene_size)
    cmd = "scripts/train_demo_models.py " + " ".join(sys.argv[1:] if argv is None else argv)
    common = {
        "scenes": args.scenes,
        "scene_size": args.scene_size,
        "seed": args.seed,
        "train_seeds": train_seeds,
        "eval_seeds": eval_seeds,
        "cloud": False,
        "device": str(device),
    }
    print(f"{len(scenes)} training / {len(held)} held-out scenes, device {device}", flush=True)

    # --- SRNet: L1 on 1 m reflectance -------------------------------------------------------
    sr_cfg = {**common, "steps": args.steps, "batch": 16, "crop_lr": 24, "lr": 2e-3, "loss": "L1"}
    print("SRNet", flush=True)
    t = time.perf_counter()
    srnet = train(
        SRNet(**SR_KWARGS),
        lambda: sr_batch(scenes, rng, sr_cfg["batch"], sr_cfg["crop_lr"]),
        F.l1_loss,
        args.steps,
        sr_cfg["lr"],
        device,
    )
    sr_cfg["seconds"] = round(time.perf_counter() - t, 1)
    l1_m, l1_b, ps_m, ps_b = [], [], [], []
    for sc in held:
        sc["sr"] = infer(srnet, sc["lr"], device)
        bic = F.interpolate(
            torch.from_numpy(sc["lr"])[None],
            scale_factor=SCALE,
            mode="bicubic",
            align_corners=False,
        )[0].numpy()
        l1_m.append(float(np.abs(sc["sr"] - sc["hr"]).mean()))
        l1_b.append(float(np.abs(bic - sc["hr"]).mean()))
        ps_m.append(psnr(sc["sr"], sc["hr"]))
        ps_b.append(psnr(bic, sc["hr"]))
    sr_eval = {
        "l1_model": round(float(np.mean(l1_m)), 6),
        "l1_bicubic": round(float(np.mean(l1_b)), 6),
        "psnr_model_db": round(float(np.mean(ps_m)), 3),
        "psnr_bicubic_db": round(float(np.mean(ps_b)), 3),
    }
    print(
        f"SRNet held-out: L1 {sr_eval['l1_model']:.5f} vs bicubic {sr_eval['l1_bicubic']:.5f}; "
        f"PSNR {sr_eval['psnr_model_db']:.2f} dB vs bicubic {sr_eval['psnr_bicubic_db']:.2f} dB",
        flush=True,
    )
    for sc in scenes:  # FieldNet also learns from what DR really produces
        sc["sr"] = infer(srnet, sc["lr"], device)

    # --- FieldNet: BCE on the eroded field-interior mask ------------------------------------
    fd_cfg = {
        **common,
        "steps": args.steps,
        "batch": 8,
        "crop": 96,
        "lr": 3e-3,
        "loss": f"BCEWithLogits, weight {GAP_WEIGHT} on background within {GAP_PX} px of fields",
        "target": "field_ids_hr > 0 eroded by disk(2)",
        "inputs": f"SRNet output ({P_SR:.0%}) or the 1 m truth",
    }
    print("FieldNet", flush=True)
    t = time.perf_counter()
    fieldnet = train(
        FieldNet(**FIELD_KWARGS),
        lambda: field_batch(scenes, rng, fd_cfg["batch"], fd_cfg["crop"]),
        weighted_bce,
        args.steps,
        fd_cfg["lr"],
        device,
    )
    fd_cfg["seconds"] = round(time.perf_counter() - t, 1)
    iou_hr, iou_sr, found = [], [], 0
    for sc in held:
        ref = sc["mask"] > 0.5
        iou_hr.append(iou(infer(fieldnet, sc["hr"], device)[0] > 0, ref))
        logit_sr = infer(fieldnet, sc["sr"], device)[0]
        iou_sr.append(iou(logit_sr > 0, ref))
        found += count_fields(1 / (1 + np.exp(-logit_sr)))
    fd_eval = {
        "iou_hr": round(float(np.mean(iou_hr)), 4),
        "iou_sr": round(float(np.mean(iou_sr)), 4),
        "fields_found_sr": found,
        "fields_true": sum(sc["n_fields"] for sc in held),
    }
    print(
        f"FieldNet held-out IoU: {fd_eval['iou_hr']:.3f} on 1 m truth, "
        f"{fd_eval['iou_sr']:.3f} on SRNet output; {found} of {fd_eval['fields_true']} "
        "fields found as separate components on SRNet output",
        flush=True,
    )

    bands = list(BANDS)
    args.out.mkdir(parents=True, exist_ok=True)
    save_model(
        srnet,
        args.out / "dr_demo.pt",
        {
            "id": f"dr_demo-s{args.seed}",
            "architecture": "srnet",
            "arch_kwargs": SR_KWARGS,
            "bands_in": bands,
            "bands_out": bands,
            "scale": SCALE,
            "normalise": {"divide": DIVIDE},
            "trained_by": cmd,
            "train_config": sr_cfg,
            "eval": sr_eval,
        },
    )
    save_model(
        fieldnet,
        args.out / "fields_demo.pt",
        {
            "id": f"fields_demo-s{args.seed}",
            "architecture": "fieldnet",
            "arch_kwargs": FIELD_KWARGS,
            "bands_in": bands,
            "bands_out": ["field_interior_logit"],
            "scale": 1,
            "normalise": {"divide": DIVIDE},
            "trained_by": cmd,
            "train_config": fd_cfg,
            "eval": fd_eval,
        },
    )
    sizes = {p.name: p.stat().st_size for p in sorted(args.out.glob("*_demo.pt"))}
    print(f"wrote {sizes} to {args.out} in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
