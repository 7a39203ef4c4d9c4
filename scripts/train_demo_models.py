#!/usr/bin/env python
"""Train the two small demo models (SRNet for DR, FieldNet for fields) on synthetic scenes.

Scenes come from ``tilepipe.demo.world.render_scene``; held-out scenes (other seeds) measure
SRNet against bicubic (L1, PSNR) and FieldNet, on the true 1 m image and on SRNet's output (what the
fields step really sees): extent IoU, and field instances (watershed from extent minus
boundary, as the fields step does) matched to the true fields.
FieldNet is multitask: field extent, field boundary and distance to the boundary. Writes
``dr_demo.pt/.json`` and ``fields_demo.pt/.json`` into ``--out``, with the training recipe and
figures in the sidecars.

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
from scipy.ndimage import distance_transform_edt
from skimage.morphology import dilation, disk
from skimage.segmentation import find_boundaries

from tilepipe.demo.world import render_scene
from tilepipe.fields.instances import instance_labels
from tilepipe.fields.metrics import instance_scores
from tilepipe.models.loading import BANDS, load_model, resolve_device, save_model
from tilepipe.models.nets import FieldNet, SRNet

SCALE = 10
DIVIDE = 10000.0
SR_KWARGS = {"bands": 4, "scale": SCALE, "features": 32, "depth": 3, "gain": 10.0}
#: Loss weight of background pixels within GAP_PX of a field interior: the gaps between
#: fields are thin, and one missed gap pixel merges two fields into one polygon.
GAP_WEIGHT, GAP_PX = 10.0, 6
#: Share of FieldNet training crops taken from SRNet output rather than the 1 m truth.
P_SR = 0.8
FIELD_KWARGS = {"bands": 4, "features": 24, "dilations": [1, 2, 4, 8, 1], "gain": 10.0, "heads": 3}
FIELD_HEADS = ["extent_logit", "boundary_logit", "distance_logit"]
#: Boundary target: every label change (field/field or field/background), dilated by this (px).
BOUNDARY_PX = 1
#: Distance target: distance to the nearest non-field pixel, / DIST_PX, clipped at 1.
DIST_PX = 12.0
#: Loss weight of boundary-target pixels in the boundary head (they are a thin minority).
BOUNDARY_WEIGHT = 5.0
#: Minimum field size (1 m pixels) counted in the instance evaluation, as the fields step's default.
MIN_FIELD_PX = 2000


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
    p.add_argument(
        "--sr-model",
        type=Path,
        default=None,
        help="use this trained DR model (e.g. models/dr_demo.pt) instead of training one; "
        "only fields_demo is written",
    )
    p.add_argument("--field-steps", type=int, default=None, help="FieldNet steps (default --steps)")
    return p.parse_args(argv)


def field_targets(field_ids: np.ndarray) -> np.ndarray:
    """(3, H, W) float32 targets: extent (field pixels), boundary band, normalised distance."""
    extent = field_ids > 0
    edges = find_boundaries(field_ids, mode="thick")
    boundary = dilation(edges.astype(np.uint8), disk(BOUNDARY_PX)).astype(bool)
    distance = np.minimum(distance_transform_edt(extent) / DIST_PX, 1.0)
    return np.stack([extent, boundary, distance]).astype(np.float32)


def gap_weight(mask: np.ndarray) -> np.ndarray:
    """Per-pixel BCE weight: GAP_WEIGHT on background near fields (roads, hedges), else 1."""
    near = dilation(mask.astype(np.uint8), disk(GAP_PX)).astype(bool) & (mask < 0.5)
    return np.where(near, GAP_WEIGHT, 1.0).astype(np.float32)


def render(seeds: list[int], size: int) -> list[dict[str, np.ndarray]]:
    """Render cloud-free scenes (alternating seasons) as float32 arrays for training/eval."""
    out = []
    for i, s in enumerate(seeds):
        sc = render_scene(s, size, size, i % 2, scale=SCALE, cloud=False)
        targets = field_targets(sc.field_ids_hr)
        out.append(
            {
                "lr": sc.lr,
                "hr": sc.hr,
                "ids": sc.field_ids_hr,
                "targets": targets,
                "weight": gap_weight(targets[0]),
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
    """Random (image, [extent, boundary, distance, weight]) crops at 1 m.

    The image is SRNet output or the 1 m truth.
    """
    xs, ys = [], []
    for _ in range(batch):
        sc = scenes[int(rng.integers(len(scenes)))]
        img = sc["sr"] if "sr" in sc and rng.random() < P_SR else sc["hr"]
        h, w = img.shape[1:]
        r, c = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        win = (slice(r, r + crop), slice(c, c + crop))
        tg = sc["targets"][:, win[0], win[1]]
        x, y, wt = augment(img[:, win[0], win[1]], tg, sc["weight"][win], rng=rng)
        xs.append(x)
        ys.append(np.concatenate([y, wt[None]]))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def multitask_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Extent BCE (gap-weighted) + boundary BCE (boundary-weighted) + distance BCE (soft)."""
    extent, boundary, distance, weight = y[:, 0:1], y[:, 1:2], y[:, 2:3], y[:, 3:4]
    bce = F.binary_cross_entropy_with_logits
    return (
        bce(logits[:, 0:1], extent, weight=weight)
        + bce(logits[:, 1:2], boundary, weight=1 + (BOUNDARY_WEIGHT - 1) * boundary)
        + bce(logits[:, 2:3], distance)
    )


def predicted_instances(logits: np.ndarray) -> np.ndarray:
    """Field instances from the three heads' logits, as the fields step forms them."""
    p = 1 / (1 + np.exp(-logits))
    labels = instance_labels(p[0], p[1], p[2], threshold=0.5, seed_threshold=0.5)
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < MIN_FIELD_PX] = 0
    return labels


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
    if args.sr_model:
        loaded = load_model(args.sr_model, expect_bands=BANDS, expect_scale=SCALE, device=device)
        srnet = loaded.module
        print(f"SRNet loaded from {args.sr_model} ({loaded.model_id})", flush=True)
    else:
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

    # --- FieldNet: extent, boundary and distance heads --------------------------------------
    field_steps = args.field_steps or args.steps
    fd_cfg = {
        **common,
        "steps": field_steps,
        "sr_model": f"{args.sr_model} ({loaded.model_id})" if args.sr_model else "trained here",
        "batch": 8,
        "crop": 96,
        "lr": 3e-3,
        "loss": (
            f"BCEWithLogits per head: extent weighted {GAP_WEIGHT} on background within "
            f"{GAP_PX} px of fields, boundary weighted {BOUNDARY_WEIGHT} on boundary pixels, "
            "distance with soft targets"
        ),
        "target": (
            f"extent: field_ids_hr > 0; boundary: label changes dilated by disk({BOUNDARY_PX}); "
            f"distance: EDT to non-field / {DIST_PX:g}, clipped at 1"
        ),
        "inputs": f"SRNet output ({P_SR:.0%}) or the 1 m truth",
    }
    print("FieldNet", flush=True)
    t = time.perf_counter()
    fieldnet = train(
        FieldNet(**FIELD_KWARGS),
        lambda: field_batch(scenes, rng, fd_cfg["batch"], fd_cfg["crop"]),
        multitask_loss,
        field_steps,
        fd_cfg["lr"],
        device,
    )
    fd_cfg["seconds"] = round(time.perf_counter() - t, 1)
    iou_hr, iou_sr, inst = [], [], []
    for sc in held:
        ref = sc["targets"][0] > 0.5
        iou_hr.append(iou(infer(fieldnet, sc["hr"], device)[0] > 0, ref))
        logit_sr = infer(fieldnet, sc["sr"], device)
        iou_sr.append(iou(logit_sr[0] > 0, ref))
        inst.append(
            instance_scores(predicted_instances(logit_sr), sc["ids"], min_truth_px=MIN_FIELD_PX)
        )
    n_true = sum(s["n_true"] for s in inst)
    fd_eval = {
        "iou_hr": round(float(np.mean(iou_hr)), 4),
        "iou_sr": round(float(np.mean(iou_sr)), 4),
        "fields_true": n_true,
        "fields_matched_sr": sum(s["matched"] for s in inst),
        "fields_found_sr": sum(s["n_pred"] for s in inst),
        **{
            f"{k}_sr": round(float(np.mean([s[k] for s in inst])), 4)
            for k in ("mean_iou", "over_segmentation", "under_segmentation")
        },
    }
    print(
        f"FieldNet held-out extent IoU: {fd_eval['iou_hr']:.3f} on 1 m truth, "
        f"{fd_eval['iou_sr']:.3f} on SRNet output; instances on SRNet output: "
        f"{fd_eval['fields_matched_sr']} of {n_true} true fields matched (IoU >= 0.5) by "
        f"{fd_eval['fields_found_sr']} found, matched IoU {fd_eval['mean_iou_sr']:.3f}, "
        f"over-/under-segmentation {fd_eval['over_segmentation_sr']:.3f}/"
        f"{fd_eval['under_segmentation_sr']:.3f}",
        flush=True,
    )

    bands = list(BANDS)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.sr_model:
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
            "bands_out": FIELD_HEADS,
            "scale": 1,
            "gsd_m": 1.0,
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
