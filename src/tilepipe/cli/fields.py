"""``tilepipe fields``: delineate fields into fields.gpkg (config section ``fields``)."""

from __future__ import annotations

import argparse
import logging

from tilepipe.cli.options import add_settings, add_tile_date, engine_kwargs, step_settings

log = logging.getLogger("tilepipe")

KEYS = (
    "model",
    "threshold",
    "seed_threshold",
    "min_area_m2",
    "max_area_m2",
    "simplify_m",
    "fill_holes_m2",
    "block",
    "halo",
    "mask_buffer",
    "max_masked_share",
    "patch",
    "overlap",
    "batch",
    "device",
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fields`` subcommand."""
    p = sub.add_parser("fields", help="delineate fields on dr.tif or s2.tif into fields.gpkg")
    add_tile_date(p)
    p.add_argument("--dr", "--image", dest="dr", required=True, help="dr.tif (1 m) or s2.tif")
    add_layer_outputs(p)
    p.add_argument(
        "--scl",
        default=None,
        help="scl.tif of the scene: pixels of the classes in `mask_classes` seed no field",
    )
    p.add_argument(
        "--prob-out",
        default=None,
        help="also keep the probability raster (uint8 extent/boundary) here, for the season",
    )
    p.add_argument(
        "--partner",
        default=None,
        help="a two-date model's other date: the same kind of image (fields.pairing)",
    )
    p.add_argument(
        "--partner-window",
        choices=("a", "b"),
        default="b",
        help="the window the partner is in (the scene is in the other)",
    )
    p.add_argument("--unpaired", default="", help="why the scene has no partner, for the error")
    add_settings(p, "fields", KEYS)
    p.set_defaults(func=run)


def add_layer_outputs(p: argparse.ArgumentParser) -> None:
    """``--out`` (the GeoPackage) and ``--parquet``: the outputs of every field layer's step."""
    p.add_argument("--out", required=True, help="fields.gpkg")
    p.add_argument("--parquet", default=None, help="also write the fields as GeoParquet here")


def polygon_settings(args: argparse.Namespace) -> dict:
    """The ``fields`` section's settings, its polygon parameters checked before any work."""
    from tilepipe.fields.polygons import Params, check_params

    return step_settings(args, check=lambda s: check_params(Params.from_settings(s)))


def run(args: argparse.Namespace) -> None:
    """Run the field model on the image and polygonise its probabilities."""
    from tilepipe.fields.delineate import run_fields
    from tilepipe.fields.polygons import Params

    settings = polygon_settings(args)
    n = run_fields(
        args.dr,
        args.out,
        model_path=settings["model"],
        params=Params.from_settings(settings),
        parquet_path=args.parquet,
        scl_path=args.scl,
        mask_classes=tuple(settings["mask_classes"]),
        mask_buffer=settings["mask_buffer"],
        prob_out=args.prob_out,
        partner=args.partner,
        partner_window=args.partner_window,
        unpaired=args.unpaired,
        **engine_kwargs(settings, args),
    )
    log.info("%d fields -> %s", n, args.out)
