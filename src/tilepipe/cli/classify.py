"""``tilepipe classify`` and ``class-raster``: crop classes per field and per pixel."""

from __future__ import annotations

import argparse
import json
import logging

from tilepipe.cli.options import add_tile_date

log = logging.getLogger("tilepipe")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``classify`` and ``class-raster`` subcommands (no settings: the model decides)."""
    p = sub.add_parser("classify", help="crop class per field into fields_classified.gpkg")
    add_tile_date(p)
    p.add_argument("--fields", required=True)
    p.add_argument("--embeddings", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--qc", default=None, help="qc.json: a failed scene is not classified")
    p.set_defaults(func=run)

    p = sub.add_parser("class-raster", help="per-pixel crop class GeoTIFF of a tile-year")
    add_tile_date(p, date=False)
    p.add_argument("--year", type=int, required=True)
    p.add_argument("--embeddings", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=run_class_raster)


def run(args: argparse.Namespace) -> None:
    """Classify the scene's fields (none when ``--qc`` says the scene failed)."""
    from tilepipe.classify.predict import classify_fields

    n = classify_fields(
        args.fields,
        args.embeddings,
        args.model,
        args.out,
        tile=args.tile,
        date=args.date,
        qc_path=args.qc,
    )
    log.info("%d fields classified -> %s", n, args.out)


def run_class_raster(args: argparse.Namespace) -> None:
    """Write the per-pixel crop classes of a tile-year."""
    from tilepipe.classify.predict import write_class_raster

    stats = write_class_raster(args.embeddings, args.model, args.out, tile=args.tile)
    log.info("crop classes per pixel -> %s: %s", args.out, json.dumps(stats))
