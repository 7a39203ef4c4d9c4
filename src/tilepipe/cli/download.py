"""``tilepipe download``: fetch one scene into s2.tif and scl.tif (config section ``source``)."""

from __future__ import annotations

import argparse

from tilepipe.cli.options import add_settings, add_tile_date, step_settings, window


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``download`` subcommand."""
    p = sub.add_parser("download", help="fetch one scene into s2.tif and scl.tif")
    add_tile_date(p)
    p.add_argument("--manifest", required=True)
    p.add_argument(
        "--window", default=None, help="col_off,row_off,width,height, 'full' or aoi:MARGIN_M:AOI"
    )
    p.add_argument("--s2", required=True)
    p.add_argument("--scl", required=True)
    p.add_argument(
        "--bands",
        default="",
        help="further L2A bands for s2.tif, comma-separated (B05,B11), added to source.bands",
    )
    add_settings(p, "source")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Read the scene's manifest row and write its bands and SCL on the tile grid."""
    from tilepipe.acquire.download import download_scene, policy_from
    from tilepipe.acquire.sources import make_source
    from tilepipe.acquire.stac import manifest_row

    settings = step_settings(args)
    source = make_source(settings)
    row = manifest_row(args.manifest, args.tile, args.date)
    download_scene(
        row,
        args.s2,
        args.scl,
        window=window(args.window, args.tile),
        source=source,
        policy=policy_from(settings),
        connections=settings["job_connections"],
        bands=[*settings["bands"], *(b for b in args.bands.split(",") if b.strip())],
        resampling=settings["resampling"],
    )
