"""``tilepipe demo``: generate the embedded demo campaign (config section ``demo``)."""

from __future__ import annotations

import argparse
import json
import logging

from tilepipe.cli.options import add_settings, step_settings

log = logging.getLogger("tilepipe")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser("demo", help="generate the embedded demo campaign")
    p.add_argument("--out", required=True, help="directory the demo inputs are written to")
    p.add_argument("--tiles", nargs="*", help="default: the demo's tiles")
    p.add_argument("--dates", nargs="*", help="default: the demo's dates")
    add_settings(p, "demo", ("size", "seed"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Write the demo catalog, embeddings and labels under ``--out``."""
    from tilepipe.demo.campaign import generate_campaign
    from tilepipe.demo.world import DEMO_DATES, DEMO_TILES

    settings = step_settings(args)
    out = generate_campaign(
        args.out,
        tiles=tuple(args.tiles or DEMO_TILES),
        dates=tuple(args.dates or DEMO_DATES),
        size=settings["size"],
        seed=settings["seed"],
    )
    log.info("demo campaign written: %s", json.dumps(out))
