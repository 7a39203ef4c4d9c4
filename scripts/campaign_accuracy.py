"""Per-date against fused field accuracy on a finished demo campaign, and its campaign layer.

For each tile of the demo campaign in WORKDIR (``snakemake --profile profiles/local`` or
``make demo`` run there), every date's ``fields.gpkg`` and the season layer are scored against
the generator's clear-sky fields of >= 2000 m² (``tilepipe.fields.metrics``), and the season
layer against each date on the fields both match. Then the campaign layer's duplicates and
cut fields before and after (its ``dedupe.json``). Prints markdown tables (docs/fields.md).

    PYTHONPATH=src python scripts/campaign_accuracy.py WORKDIR [--season 2022]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyogrio.raw
import rasterio.features
import shapely
import yaml
from affine import Affine

from tilepipe.demo.world import demo_scene, demo_window
from tilepipe.fields.metrics import field_ious, instance_scores, paired_iou


def labels(path: Path, shape: tuple[int, int], transform: Affine) -> np.ndarray:
    """A fields layer rasterised by its order onto the truth grid (0 = no field)."""
    _, _, wkb, _ = pyogrio.raw.read(path, layer="fields", columns=[])
    geoms = shapely.from_wkb(wkb)
    if not len(geoms):
        return np.zeros(shape, dtype=np.int32)
    pairs = ((g, i + 1) for i, g in enumerate(geoms))
    return rasterio.features.rasterize(pairs, out_shape=shape, transform=transform, dtype="int32")


def tile_rows(work: Path, tile: str, dates: list[str], season: str, size: int) -> list[str]:
    """One markdown row per date and for the season layer of ``tile``."""
    transform, _, _ = demo_window(tile, size)
    truth = demo_scene(tile, size, 0, cloud=False).field_ids_hr
    hr = transform @ Affine.scale(0.1)
    paths = {d: work / "results" / tile / d / "fields.gpkg" for d in dates}
    paths[f"season {season}"] = work / "results" / tile / "season" / season / "fields.gpkg"
    layers = {name: labels(p, truth.shape, hr) for name, p in paths.items()}
    ious = {name: field_ious(p, truth, min_truth_px=2000) for name, p in layers.items()}
    rows = []
    for name, pred in layers.items():
        s = instance_scores(pred, truth, min_truth_px=2000)
        paired = ""
        if name in dates:
            n, fused, alone = paired_iou(ious[f"season {season}"], ious[name])
            paired = f"{n}: {alone:.3f} → {fused:.3f}"
        rows.append(
            f"| {tile} | {name} | {s['matched']} / {s['n_true']} | {s['mean_iou']:.3f} | "
            f"{paired} | {s['split_rate']:.3f} | {s['merge_rate']:.3f} |"
        )
    return rows


def main() -> None:
    """Print the tables for the campaign in WORKDIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--season", default="2022")
    args = parser.parse_args()
    work = args.workdir
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    size = config["demo"]["size"]
    scenes = [line.split(",")[:2] for line in (work / "manifests/scenes.csv").read_text().split()]
    header = scenes.pop(0)
    col_t, col_d = header.index("tile"), header.index("date")
    print(
        "| tile | layer | matched | matched IoU | both match: n, date → fused IoU | split |", end=""
    )
    print(" merge |")
    print("|---|---|---|---|---|---|---|")
    for tile in config["tiles"]:
        dates = sorted(row[col_d] for row in scenes if row[col_t] == tile)
        print("\n".join(tile_rows(work, tile, dates, args.season, size)))
    stats = json.loads((work / f"results/campaign/season/{args.season}/dedupe.json").read_text())
    print("\n| campaign layer | before | after |\n|---|---|---|")
    print(f"| fields | {sum(stats['fields_in'].values())} | {stats['fields_out']} |")
    print(f"| duplicates | {stats['duplicates_before']} | {stats['duplicates_after']} |")
    print(f"| fields cut at a tile edge | {stats['cut_before']} | {stats['cut_after']} |")


if __name__ == "__main__":
    main()
