"""``tilepipe embeddings``: embeddings of a tile-year on the tile grid (section ``embeddings``)."""

from __future__ import annotations

import argparse
import json
import logging

from tilepipe.cli.options import add_settings, add_tile_date, step_settings, window

log = logging.getLogger("tilepipe")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``embeddings`` subcommand."""
    p = sub.add_parser("embeddings", help="TESSERA embeddings of a tile-year on the tile grid")
    add_tile_date(p, date=False)
    p.add_argument("--year", type=int, required=True)
    p.add_argument("--window", default=None)
    p.add_argument("--out", required=True)
    keys = ("source", "cache", "kind", "aef_dequantise")
    add_settings(p, "embeddings", keys, aliases={"aef_dequantise": ("--dequantise",)})
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Write the tile-year's embeddings (TESSERA or AEF) over the tile's window."""
    from tilepipe.core.grid import tile_grid
    from tilepipe.embeddings.tessera import build_tile_embeddings

    settings = step_settings(args, need=("source",))
    grid = tile_grid(args.tile)
    win = window(args.window, args.tile)
    transform, width, height = grid.window(*win) if win else (grid.transform, grid.size, grid.size)
    where = dict(crs=grid.crs, transform=transform, width=width, height=height, tile=args.tile)
    where["cache"] = settings["cache"]
    if settings["kind"] == "aef":
        from tilepipe.embeddings.aef import build_tile_embeddings_aef

        formula = settings["aef_dequantise"]
        stats = build_tile_embeddings_aef(
            settings["source"], args.year, args.out, formula=formula, **where
        )
        log.info("AEF embeddings -> %s: %s", args.out, json.dumps(stats))
        return
    build_tile_embeddings(settings["source"], args.year, args.out, **where)
