"""``tilepipe search``: search scenes and write the scene manifest (config section ``source``)."""

from __future__ import annotations

import argparse
import logging

from tilepipe.cli.options import add_settings, check_dates, pairs_arg, step_settings, window

log = logging.getLogger("tilepipe")

#: the ``source`` keys with a flag of their own (``--max-dates`` kept as a short name)
KEYS = ("catalog", "collection", "max_cloud", "max_dates_per_tile")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``search`` subcommand."""
    p = sub.add_parser("search", help="search scenes and write the scene manifest")
    p.add_argument("--tiles", nargs="+", required=True)
    p.add_argument("--start", required=True, help="first date YYYY-MM-DD")
    p.add_argument("--end", required=True, help="last date YYYY-MM-DD (inclusive)")
    p.add_argument("--window", default=None, help="rank by cloud over this window (or aoi:...)")
    p.add_argument(
        "--tile-window",
        action="append",
        default=[],
        metavar="TILE=WINDOW",
        help="a tile's own window, replacing --window for it (repeatable)",
    )
    p.add_argument("--out", required=True, help="the scene manifest (CSV)")
    add_settings(p, "source", KEYS, aliases={"max_dates_per_tile": ("--max-dates",)})
    p.set_defaults(func=run)


def _aoi_stats(args: argparse.Namespace, source, policy):
    """Per-item cloud and nodata over the window of each tile, or None without a window."""
    from tilepipe.acquire.download import aoi_scene_stats

    own = pairs_arg(args.tile_window, "tile-window")
    texts = {tile: own.get(tile, args.window) for tile in args.tiles}
    if all(text in (None, "", "full") for text in texts.values()):
        return None
    windows = {tile: window(text, tile) for tile, text in texts.items()}

    def stats(item):
        return aoi_scene_stats(item, windows, source=source, policy=policy)

    return stats


def run(args: argparse.Namespace) -> None:
    """Find the items, choose the scenes and write the manifest."""
    from tilepipe.acquire import stac
    from tilepipe.acquire.download import policy_from
    from tilepipe.acquire.sources import make_source
    from tilepipe.core.grid import validate_tile

    check_dates(args.start, args.end)  # the rules the workflow's config check runs
    for tile in args.tiles:
        validate_tile(tile)
    settings = step_settings(args, need=("catalog",))
    source, policy = make_source(settings), policy_from(settings)
    stats = _aoi_stats(args, source, policy)
    items = stac.find_items(
        settings["catalog"],
        collection=source.collection,  # the named one, else the provider's current one
        tiles=args.tiles,
        start=args.start,
        end=args.end,
        source=source,
        # with a window, cloud is judged over the window: the tile's own cover may not cut
        max_cloud=100.0 if stats else settings["max_cloud"],
        policy=policy,
    )
    records = stac.select_scenes(
        items,
        max_cloud=settings["max_cloud"],
        max_dates_per_tile=settings["max_dates_per_tile"],
        aoi_stats=stats,
    )
    for tile in sorted(set(args.tiles) - {r.tile for r in records}):
        log.warning(
            "tile %s: no scene between %s and %s under %g%% cloud",
            tile,
            args.start,
            args.end,
            settings["max_cloud"],
        )
    stac.write_manifest(records, args.out)
    log.info("%d items found, %d scenes chosen -> %s", len(items), len(records), args.out)
