"""``tilepipe plan``: jobs, sbatch calls, GPU-hours, billing and storage of a campaign."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``plan`` subcommand."""
    p = sub.add_parser("plan", help="jobs, sbatch calls, GPU-hours, billing and storage")
    p.add_argument("--configfile", default="config/config.yaml")
    p.add_argument("--profile", default=None, help="profile directory, e.g. profiles/lumi")
    p.add_argument("--manifest", default="manifests/scenes.csv")
    p.add_argument("--tiles-count", type=int, default=0, help="size a hypothetical campaign")
    p.add_argument("--dates-per-tile", type=int, default=1)
    p.add_argument("--window", default=None, help="'full' or WIDTH,HEIGHT in 10 m pixels")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _window(text: str) -> Any:
    """The config ``window`` of a ``--window`` argument (``full`` or ``WIDTH,HEIGHT``)."""
    if text == "full":
        return "full"
    return {"width": int(text.split(",")[0]), "height": int(text.split(",")[-1])}


def _scenes(args: argparse.Namespace, config: dict, year: int) -> tuple[list, str]:
    """The (tile, date) pairs planned for, and a line saying where they come from."""
    from tilepipe.campaign import plan as planning
    from tilepipe.campaign.status import read_scenes

    manifest = Path(args.manifest)
    if args.tiles_count:
        scenes = planning.hypothetical_scenes(args.tiles_count, args.dates_per_tile, year)
        config["tiles"] = sorted({t for t, _ in scenes})
        return scenes, f"{args.tiles_count} tiles × {args.dates_per_tile} dates (hypothetical)"
    if manifest.is_file():
        scenes = read_scenes(manifest)
        return scenes, f"{len(scenes)} tile-dates from {manifest}"
    per_tile = config.get("source", {}).get("max_dates_per_tile") or 1
    tiles = config.get("tiles", [])
    scenes = [(t, f"{year}-01-{1 + d:02d}") for t in tiles for d in range(per_tile)]
    return scenes, (
        f"no manifest yet: {len(tiles)} tiles × max_dates_per_tile {per_tile} "
        "(the search may find fewer)"
    )


def run(args: argparse.Namespace) -> None:
    """Print the plan of the campaign under the profile."""
    import yaml

    from tilepipe.campaign import plan as planning
    from tilepipe.campaign.config import download_bands

    config = yaml.safe_load(Path(args.configfile).read_text()) or {}
    profile = planning.load_profile(args.profile)
    config = planning.merge(config, profile.get("config", {}))
    if args.window:
        config["window"] = _window(args.window)
    year = int(config.get("classify", {}).get("year", 2022))
    if config.get("aoi") and not config.get("tiles"):
        from tilepipe.campaign.config import campaign_tiles

        config["tiles"] = campaign_tiles(config)  # the AOI's tiles, offline
    scenes, source = _scenes(args, config, year)
    runtime = config.get("plan", {}).get("runtime")
    dr_scale = planning.configured_dr_scale(config)
    more = download_bands(config)
    plans = planning.plan(config, profile, scenes, runtime, dr_scale, len(more))
    notes = planning.assumptions(profile, config, source, dr_scale, more)
    layouts = planning.gpu_layouts(config, profile, len(scenes), runtime, dr_scale)
    workers = int((config.get("workers") or {}).get("count", 0) or 0)
    if args.json:
        out = {"rules": [p.__dict__ for p in plans], "assumptions": notes}
        out["gpu_layouts"] = [{**lay.__dict__, "engine_share": lay.engine_share} for lay in layouts]
        print(json.dumps(out, indent=1))
    else:
        print(planning.format_plan(plans, notes))
        print(planning.format_layouts(layouts, workers))
