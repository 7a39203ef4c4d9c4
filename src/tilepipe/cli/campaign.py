"""``tilepipe campaign-fields``: a campaign's season field layers as one layer, each field once
across the tiles' overlaps (``tilepipe.fields.dedupe``)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("tilepipe")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``campaign-fields`` subcommand."""
    p = sub.add_parser(
        "campaign-fields",
        help="merge tiles' season field layers into one, each field once across tile overlaps",
    )
    p.add_argument("--season", required=True, help="the season's name (e.g. 2022)")
    p.add_argument(
        "--layer",
        action="append",
        required=True,
        metavar="TILE=PATH",
        help="a tile's season layer (fields.gpkg or fields_classified.gpkg); repeat per tile",
    )
    p.add_argument(
        "--window",
        action="append",
        default=[],
        metavar="TILE=ARG",
        help="what a tile processed: col_off,row_off,width,height, full or aoi:MARGIN_M:AOI "
        "(as the steps' --window); a tile without one was processed full",
    )
    p.add_argument("--out", required=True, help="the campaign layer, a GeoPackage")
    p.add_argument("--parquet", default=None, help="also write it as fiboa GeoParquet here")
    p.add_argument("--stats", default=None, help="also write the dedupe's statistics (JSON) here")
    p.add_argument(
        "--min-overlap",
        type=float,
        default=0.5,
        help="two copies are one field when they share this share of the smaller (default: 0.5)",
    )
    p.add_argument("--crs", default="EPSG:4326", help="the layer's CRS (default: EPSG:4326)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Read the tiles' layers, keep one copy of each field, write layer, parquet and stats."""
    from pathlib import Path

    from pyproj import CRS
    from pyproj.exceptions import CRSError

    from tilepipe.cli.options import pairs_arg, window
    from tilepipe.core.errors import ConfigError
    from tilepipe.fields.dedupe import (
        TileLayer,
        campaign_fields,
        tile_extent,
        write_campaign_layer,
    )

    paths = pairs_arg(args.layer, "layer")
    windows = pairs_arg(args.window, "window")
    unknown = sorted(set(windows) - set(paths))
    if unknown:
        raise ConfigError(f"--window for tile(s) {unknown} without a --layer")
    try:
        crs = CRS.from_user_input(args.crs).to_string()
    except CRSError as exc:
        raise ConfigError(f"--crs {args.crs!r}: {exc}") from exc
    layers = [
        TileLayer(tile, Path(path), tile_extent(tile, window(windows.get(tile), tile)))
        for tile, path in paths.items()
    ]
    out, stats = campaign_fields(layers, args.season, min_overlap=args.min_overlap, crs=crs)
    for pair in stats.pairs:
        a, b = pair.tiles
        log.info(
            "campaign-fields %s: %s/%s: %d and %d fields in the overlap, %d duplicates before, "
            "%d after",
            args.season,
            a,
            b,
            pair.in_overlap[a],
            pair.in_overlap[b],
            pair.duplicates_before,
            pair.duplicates_after,
        )
    metadata = {
        "SEASON": args.season,
        "TILES": ",".join(stats.tiles),
        "MIN_OVERLAP": str(args.min_overlap),
    }
    write_campaign_layer(out, args.out, args.parquet, args.stats, stats=stats, metadata=metadata)
    log.info(
        "campaign-fields %s: %d fields from %d tiles -> %s (%d duplicates and %d cut before, "
        "%d and %d after)",
        args.season,
        stats.fields_out,
        len(stats.tiles),
        args.out,
        stats.duplicates_before,
        stats.cut_before,
        stats.duplicates_after,
        stats.cut_after,
    )
