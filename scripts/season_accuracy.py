"""Per-date against fused field accuracy on held-out demo scenes (docs/fields.md, issue 16).

For each seed, the demo scene's dates (January, June: clouds, shadows and their SCL) go through
the real steps: DR model, fields model with the SCL mask (probabilities kept), then the season
fusion; every layer is scored against the generator's fields of >= 2000 m². Prints one markdown
row per seed and layer. ``tests/fields/test_season.py`` asserts the same comparison on seed 11.

    PYTHONPATH=src python scripts/season_accuracy.py --seeds 11 12 13
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pyogrio.raw
import rasterio
import rasterio.features
import shapely
from affine import Affine

from tilepipe.core.raster import gtiff_profile
from tilepipe.core.settings import section_defaults
from tilepipe.demo.world import render_scene, scl_from_scene
from tilepipe.fields.delineate import run_fields
from tilepipe.fields.metrics import instance_scores
from tilepipe.fields.season import DateInput, run_season
from tilepipe.models.loading import BANDS
from tilepipe.superres import run_superres

REPO = Path(__file__).resolve().parents[1]
SIZE = 96
TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0)
DATES = ("january", "june")


def write(path: Path, data: np.ndarray, descriptions: tuple[str, ...]) -> None:
    """A 10 m raster of the scene's grid (nodata 0)."""
    profile = gtiff_profile(
        width=SIZE,
        height=SIZE,
        count=data.shape[0],
        dtype=str(data.dtype),
        crs="EPSG:32633",
        transform=TRANSFORM,
        nodata=0,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions


def score(path: Path, shape, transform, truth: np.ndarray) -> dict[str, float]:
    """Instance scores of a fields layer rasterised onto the 1 m truth grid."""
    _, _, wkb, data = pyogrio.raw.read(path, layer="fields", columns=["field_id"])
    pairs = zip(shapely.from_wkb(wkb), data[0].tolist(), strict=True)
    pred = rasterio.features.rasterize(pairs, out_shape=shape, transform=transform, dtype="int32")
    return instance_scores(pred, truth, min_truth_px=2000)


def run_seed(seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    """Scores of each date and of the fused season for one demo seed."""
    fields = section_defaults("fields")
    classes, buffer = tuple(fields["mask_classes"]), fields["mask_buffer"]
    scores, dates = {}, []
    for index, name in enumerate(DATES):
        scene = render_scene(seed, SIZE, SIZE, index)
        s2, scl, dr = (tmp / f"{k}_{name}.tif" for k in ("s2", "scl", "dr"))
        write(s2, np.clip(np.rint(scene.lr * 10000), 1, 65535).astype(np.uint16), BANDS)
        write(scl, scl_from_scene(scene)[None], ("SCL",))
        run_superres(s2, dr, model_path=REPO / "models/dr_demo.pt", device="cpu")
        prob, out = tmp / f"prob_{name}.tif", tmp / f"fields_{name}.gpkg"
        run_fields(
            dr,
            out,
            model_path=REPO / "models/fields_demo.pt",
            device="cpu",
            scl_path=scl,
            mask_classes=classes,
            mask_buffer=buffer,
            prob_out=prob,
        )
        with rasterio.open(dr) as src:
            grid = (src.height, src.width), src.transform
        scores[name] = score(out, *grid, scene.field_ids_hr)
        dates.append(DateInput(name, prob, scl))
    fused = tmp / "season.gpkg"
    run_season(dates, fused, tile="33UXP", season="s", mask_classes=classes, mask_buffer=buffer)
    scores["fused"] = score(fused, *grid, scene.field_ids_hr)
    return scores


def main() -> None:
    """Print the table rows of every seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    args = parser.parse_args()
    print("| seed | layer | matched | matched IoU | split rate | merge rate |")
    print("|---|---|---|---|---|---|")
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            for name, s in run_seed(seed, Path(tmp)).items():
                print(
                    f"| {seed} | {name} | {s['matched']} / {s['n_true']} | {s['mean_iou']:.3f} "
                    f"| {s['split_rate']:.3f} | {s['merge_rate']:.3f} |"
                )


if __name__ == "__main__":
    main()
