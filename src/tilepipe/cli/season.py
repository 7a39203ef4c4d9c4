"""``tilepipe season``: fuse a tile's dates into one season field layer (sections ``fields``,
``season``)."""

from __future__ import annotations

import argparse
import logging

from tilepipe.cli.fields import add_layer_outputs, polygon_settings
from tilepipe.cli.options import add_settings

log = logging.getLogger("tilepipe")

KEYS = (
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
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``season`` subcommand."""
    p = sub.add_parser(
        "season", help="fuse a tile's dates (kept fields probabilities + SCL) into one layer"
    )
    p.add_argument("--tile", required=True, help="MGRS tile id, e.g. 33UXP")
    p.add_argument("--season", required=True, help="the season's name (e.g. 2022)")
    p.add_argument("--dates", nargs="+", required=True, help="the dates fused, YYYY-MM-DD")
    p.add_argument("--prob", nargs="+", required=True, help="each date's fields_prob.tif")
    p.add_argument("--scl", nargs="*", default=None, help="each date's scl.tif (the mask)")
    add_layer_outputs(p)
    p.add_argument(
        "--min-clear-share",
        type=float,
        default=None,
        help="a date counts for a field when it saw this share of it clear (default: schema)",
    )
    p.add_argument(
        "--edge-ramp-m",
        type=float,
        default=None,
        help="a date's pixels count less within this distance of its mask (default: schema)",
    )
    add_settings(p, "fields", KEYS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Fuse the dates' probabilities over their clear pixels and polygonise once."""
    from pathlib import Path

    from tilepipe.core.errors import ConfigError
    from tilepipe.core.settings import section_defaults
    from tilepipe.fields.polygons import Params
    from tilepipe.fields.season import DateInput, run_season

    settings = polygon_settings(args)
    scls = args.scl or [None] * len(args.dates)
    if not len(args.dates) == len(args.prob) == len(scls):
        raise ConfigError(
            f"season {args.tile} {args.season}: {len(args.dates)} dates, {len(args.prob)} "
            f"--prob and {len(scls)} --scl: give one of each per date"
        )
    season = section_defaults("season")
    share = season["min_clear_share"] if args.min_clear_share is None else args.min_clear_share
    ramp = season["edge_ramp_m"] if args.edge_ramp_m is None else args.edge_ramp_m
    if not ramp >= 0:
        raise ConfigError(f"season {args.tile} {args.season}: --edge-ramp-m {ramp} is below 0")
    dates = [
        DateInput(d, Path(p), Path(s) if s else None)
        for d, p, s in zip(args.dates, args.prob, scls, strict=True)
    ]
    n = run_season(
        dates,
        args.out,
        tile=args.tile,
        season=args.season,
        params=Params.from_settings(settings),
        mask_classes=tuple(settings["mask_classes"]),
        mask_buffer=settings["mask_buffer"],
        min_clear_share=share,
        parquet_path=args.parquet,
        edge_ramp_m=ramp,
    )
    log.info("%d season fields -> %s", n, args.out)
