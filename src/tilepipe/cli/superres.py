"""``tilepipe superres``: 10x super-resolution of s2.tif into dr.tif (section ``superres``)."""

from __future__ import annotations

import argparse
import json
import logging

from tilepipe.cli.options import add_settings, add_tile_date, bounds, engine_kwargs, step_settings

log = logging.getLogger("tilepipe")

KEYS = (
    "method",
    "model",
    "patch",
    "overlap",
    "batch",
    "device",
    "precision",
    "compile",
    "resume",
    "cog",
    "overviews",
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``superres`` subcommand."""
    p = sub.add_parser("superres", help="10x super-resolution of s2.tif into dr.tif")
    add_tile_date(p)
    p.add_argument("--s2", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--aoi", default=None, help="minx,miny,maxx,maxy (raster CRS) or 'full'")
    p.add_argument("--aoi-margin", type=int, default=0, help="AOI margin in 10 m pixels")
    add_settings(p, "superres", KEYS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Super-resolve ``--s2`` into ``--out`` with the section's method, model and engine."""
    from tilepipe.superres import run_superres

    settings = step_settings(args)
    stats = run_superres(
        args.s2,
        args.out,
        method=settings["method"],
        model_path=settings["model"] if settings["method"] == "model" else None,
        precision=settings["precision"],
        compile=settings["compile"],
        resume=settings["resume"],
        cog=settings["cog"],
        overviews=settings["overviews"],
        aoi=bounds(args.aoi),
        aoi_margin=args.aoi_margin,
        **engine_kwargs(settings, args),
    )
    log.info("superres done: %s", json.dumps(stats, default=str))
