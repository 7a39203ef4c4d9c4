"""The ``tilepipe`` command: one subcommand per workflow step, each usable without Snakemake.

Errors tilepipe expects (bad input, bad model, bad config) print one line naming the tile, date,
file and cause, and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tilepipe import __version__
from tilepipe.core.errors import ConfigError, Terminated, TilepipeError, context

log = logging.getLogger("tilepipe")


def _window(text: str | None, tile: str | None = None) -> tuple[int, int, int, int] | None:
    """Parse ``col_off,row_off,width,height`` (10 m pixels of the tile), ``full``, or
    ``aoi:MARGIN_M:AOI`` (AOI a bbox ``w,s,e,n`` or a GeoJSON path): the tile's part of it."""
    if text is None or text in ("", "full", "none", "None"):
        return None
    if text.startswith("aoi:") and tile:
        from tilepipe.core.grid import aoi_window, load_aoi

        margin, _, spec = text[4:].partition(":")
        try:
            margin_m = float(margin)
        except ValueError:
            raise ConfigError(f"window {text!r}: expected aoi:MARGIN_M:AOI") from None
        window = aoi_window(tile, load_aoi(spec), margin_m)
        if window is None:
            raise ConfigError(f"tile {tile}: the AOI {spec} does not meet this tile")
        return window
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0:
        raise ConfigError(f"window {text!r} must be 'col_off,row_off,width,height' or 'full'")
    return values  # type: ignore[return-value]


def _bounds(text: str | None) -> tuple[float, float, float, float] | None:
    """Parse ``minx,miny,maxx,maxy`` in the raster's CRS, or ``full``."""
    if text is None or text in ("", "full"):
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] >= values[2] or values[1] >= values[3]:
        raise ConfigError(f"AOI {text!r} must be 'minx,miny,maxx,maxy' (raster CRS) or 'full'")
    return values  # type: ignore[return-value]


def _json_arg(text: str) -> dict:
    """A JSON object given inline or as ``@file``."""
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError("expected a JSON object")
    return value


def cmd_demo(args: argparse.Namespace) -> None:
    from tilepipe.demo.campaign import generate_campaign
    from tilepipe.demo.world import DEMO_DATES, DEMO_TILES

    out = generate_campaign(
        args.out,
        tiles=tuple(args.tiles or DEMO_TILES),
        dates=tuple(args.dates or DEMO_DATES),
        size=args.size,
        seed=args.seed,
    )
    log.info("demo campaign written: %s", json.dumps(out))


def _source(args: argparse.Namespace):
    """The source and retry policy of ``--source`` (the config's ``source`` mapping as JSON)."""
    from tilepipe.acquire.download import policy_from
    from tilepipe.acquire.sources import make_source

    settings = _json_arg(args.source) if args.source else {}
    return make_source(settings), policy_from(settings), int(settings.get("job_connections", 2))


def cmd_search(args: argparse.Namespace) -> None:
    from tilepipe.acquire import stac
    from tilepipe.acquire.download import aoi_scene_stats

    source, policy, _ = _source(args)
    windowed = args.window not in (None, "", "full")
    items = stac.find_items(
        args.catalog,
        collection=args.collection,
        tiles=args.tiles,
        start=args.start,
        end=args.end,
        source=source,
        # with a window, cloud is judged over the window: the tile's own cover may not cut
        max_cloud=100.0 if windowed else args.max_cloud,
        policy=policy,
    )
    stats = None
    if windowed:
        windows = {tile: _window(args.window, tile) for tile in args.tiles}

        def stats(item):
            return aoi_scene_stats(item, windows, source=source, policy=policy)

    records = stac.select_scenes(
        items, max_cloud=args.max_cloud, max_dates_per_tile=args.max_dates, aoi_stats=stats
    )
    missing = sorted(set(args.tiles) - {r.tile for r in records})
    for tile in missing:
        log.warning(
            "tile %s: no scene between %s and %s under %g%% cloud",
            tile,
            args.start,
            args.end,
            args.max_cloud,
        )
    stac.write_manifest(records, args.out)
    log.info("%d items found, %d scenes chosen -> %s", len(items), len(records), args.out)


def cmd_download(args: argparse.Namespace) -> None:
    from tilepipe.acquire.download import download_scene
    from tilepipe.acquire.stac import manifest_row

    source, policy, connections = _source(args)
    if hasattr(source, "check_credentials"):
        source.check_credentials()  # CDSE: say where keys are looked for, before any request
    row = manifest_row(args.manifest, args.tile, args.date)
    download_scene(
        row,
        args.s2,
        args.scl,
        window=_window(args.window, args.tile),
        source=source,
        policy=policy,
        connections=connections,
    )


def _engine_kwargs(args: argparse.Namespace) -> dict:
    """Arguments every step run by the tiling engine takes."""
    names = ("patch", "overlap", "batch", "device", "tile", "date")
    return {name: getattr(args, name) for name in names}


def cmd_superres(args: argparse.Namespace) -> None:
    from tilepipe.superres import run_superres

    stats = run_superres(
        args.s2,
        args.out,
        method=args.method,
        model_path=args.model,
        precision=args.precision,
        compile=args.compile,
        resume=args.resume,
        cog=args.cog,
        overviews=args.overviews,
        aoi=_bounds(args.aoi),
        aoi_margin=args.aoi_margin,
        **_engine_kwargs(args),
    )
    log.info("superres done: %s", json.dumps(stats, default=str))


def cmd_fields(args: argparse.Namespace) -> None:
    from tilepipe.fields.delineate import run_fields
    from tilepipe.fields.polygons import Params

    params = Params(
        threshold=args.threshold,
        seed_threshold=args.seed_threshold,
        min_area_m2=args.min_area_m2,
        max_area_m2=args.max_area_m2,
        simplify_m=args.simplify_m,
        fill_holes_m2=args.fill_holes_m2,
        block=args.block,
        halo=args.halo,
    )
    n = run_fields(
        args.dr,
        args.out,
        model_path=args.model,
        params=params,
        parquet_path=args.parquet,
        **_engine_kwargs(args),
    )
    log.info("%d fields -> %s", n, args.out)


def cmd_qc(args: argparse.Namespace) -> None:
    from tilepipe.qc.checks import merge_thresholds, write_qc
    from tilepipe.qc.scene import run_qc

    thresholds = merge_thresholds(_json_arg(args.thresholds) if args.thresholds else None)
    report = run_qc(
        tile=args.tile,
        date=args.date,
        s2_path=args.s2,
        scl_path=args.scl,
        dr_path=args.dr,
        fields_path=args.fields,
        thresholds=thresholds,
    )
    write_qc(report, args.out)
    for check in report["checks"]:
        if check["status"] != "pass":
            log.warning("qc %s: %s", check["name"], check["message"])
    log.info("qc %s %s: %s", args.tile, args.date, report["status"])


def cmd_embeddings(args: argparse.Namespace) -> None:
    from tilepipe.core.grid import tile_grid
    from tilepipe.embeddings.tessera import build_tile_embeddings

    grid = tile_grid(args.tile)
    window = _window(args.window, args.tile)
    transform, width, height = (
        grid.window(*window) if window else (grid.transform, grid.size, grid.size)
    )
    if args.kind == "aef":
        from tilepipe.embeddings.aef import build_tile_embeddings_aef

        stats = build_tile_embeddings_aef(
            args.source,
            args.year,
            args.out,
            crs=grid.crs,
            transform=transform,
            width=width,
            height=height,
            formula=args.dequantise,
            tile=args.tile,
        )
        log.info("AEF embeddings -> %s: %s", args.out, json.dumps(stats))
        return
    build_tile_embeddings(
        args.source,
        args.year,
        args.out,
        crs=grid.crs,
        transform=transform,
        width=width,
        height=height,
        tile=args.tile,
    )


def cmd_train(args: argparse.Namespace) -> None:
    from tilepipe.classify.train import train_classifier

    embeddings = {}
    for item in args.embeddings:
        tile, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--embeddings expects TILE=PATH, got {item!r}")
        embeddings[tile] = path
    metrics = train_classifier(
        args.labels,
        embeddings,
        args.model_out,
        args.metrics_out,
        test_fraction=args.test_fraction,
        seed=args.seed,
        iterations=args.iterations,
        class_weights=args.class_weights == "balanced",
        spatial_block_m=args.spatial_block_m,
        task_type=args.task_type,
        baseline_k=args.baseline_k,
    )
    log.info("classifier trained: %s", json.dumps(metrics, default=str))


def cmd_classify(args: argparse.Namespace) -> None:
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


def cmd_class_raster(args: argparse.Namespace) -> None:
    from tilepipe.classify.predict import write_class_raster

    stats = write_class_raster(args.embeddings, args.model, args.out, tile=args.tile)
    log.info("crop classes per pixel -> %s: %s", args.out, json.dumps(stats))


def cmd_qc_classification(args: argparse.Namespace) -> None:
    from tilepipe.classify.quality import run_classification_qc
    from tilepipe.qc.checks import merge_thresholds, write_qc

    thresholds = merge_thresholds(_json_arg(args.thresholds) if args.thresholds else None)
    report = run_classification_qc(
        tile=args.tile, date=args.date, classified_path=args.classified, thresholds=thresholds
    )
    write_qc(report, args.out)
    for check in report["checks"]:
        if check["status"] != "pass":
            log.warning("qc %s: %s", check["name"], check["message"])
    log.info("classification qc %s %s: %s", args.tile, args.date, report["status"])


def cmd_quicklook(args: argparse.Namespace) -> None:
    from tilepipe.report.quicklooks import quicklooks

    quicklooks(
        args.s2,
        args.dr,
        args.fields,
        rgb=args.rgb,
        dr_png=args.dr_png,
        fields_png=args.fields_png,
        size=args.size,
    )


def cmd_qc_summary(args: argparse.Namespace) -> None:
    from tilepipe.report.summary import qc_summary

    plots = {
        k: v
        for k, v in (
            ("status", args.status_png),
            ("values", args.values_png),
            ("confusion", args.confusion_png),
        )
        if v
    }
    qc_summary(
        args.qc,
        args.out,
        metrics=args.metrics,
        classification_qc=args.classification_qc,
        summary_csv=args.summary_csv,
        plots=plots,
    )


def cmd_status(args: argparse.Namespace) -> None:
    from tilepipe.campaign.status import campaign_status, targets

    workdir = Path(args.workdir)
    manifest = Path(args.manifest) if args.manifest else workdir / "manifests" / "scenes.csv"
    if not manifest.is_file():
        raise ConfigError(f"file {manifest}: no scene manifest yet (the search has not run)")
    statuses = campaign_status(workdir, manifest)
    if args.targets:
        print("\n".join(targets(statuses, set(args.targets))))
        return
    if args.json:
        print(json.dumps([s.__dict__ for s in statuses], indent=1))
        return
    for s in statuses:
        detail = f"{s.step}: {s.cause}" if s.cause else s.step
        qc = f" (qc {s.qc})" if s.qc else ""
        print(f"{s.tile}  {s.date}  {s.state:<10}{qc} {detail}".rstrip())
    counts = {state: sum(s.state == state for s in statuses) for state in STATES}
    print(", ".join(f"{n} {state}" for state, n in counts.items()), f"of {len(statuses)}")


STATES = ("done", "failed", "incomplete", "pending")


def cmd_plan(args: argparse.Namespace) -> None:
    import yaml

    from tilepipe.campaign import plan as planning
    from tilepipe.campaign.status import read_scenes

    config = yaml.safe_load(Path(args.configfile).read_text()) or {}
    profile = planning.load_profile(args.profile)
    config = planning.merge(config, profile.get("config", {}))
    if args.window:
        config["window"] = (
            "full"
            if args.window == "full"
            else {
                "width": int(args.window.split(",")[0]),
                "height": int(args.window.split(",")[-1]),
            }
        )
    year = int(config.get("classify", {}).get("year", 2022))
    if config.get("aoi") and not config.get("tiles"):
        from tilepipe.campaign.config import campaign_tiles

        config["tiles"] = campaign_tiles(config)  # the AOI's tiles, offline
    manifest = Path(args.manifest)
    if args.tiles_count:
        scenes = planning.hypothetical_scenes(args.tiles_count, args.dates_per_tile, year)
        config["tiles"] = sorted({t for t, _ in scenes})
        source = f"{args.tiles_count} tiles × {args.dates_per_tile} dates (hypothetical)"
    elif manifest.is_file():
        scenes = read_scenes(manifest)
        source = f"{len(scenes)} tile-dates from {manifest}"
    else:
        per_tile = config.get("source", {}).get("max_dates_per_tile") or 1
        tiles = config.get("tiles", [])
        scenes = [(t, f"{year}-01-{1 + d:02d}") for t in tiles for d in range(per_tile)]
        source = (
            f"no manifest yet: {len(tiles)} tiles × max_dates_per_tile {per_tile} "
            "(the search may find fewer)"
        )
    runtime = config.get("plan", {}).get("runtime")
    plans = planning.plan(config, profile, scenes, runtime)
    notes = planning.assumptions(profile, config, source)
    if args.json:
        print(json.dumps({"rules": [p.__dict__ for p in plans], "assumptions": notes}, indent=1))
    else:
        print(planning.format_plan(plans, notes))


def _add_common(p: argparse.ArgumentParser, *, tile: bool = True, date: bool = True) -> None:
    if tile:
        p.add_argument("--tile", required=True, help="MGRS tile id, e.g. 33UXP")
    if date:
        p.add_argument("--date", required=True, help="acquisition date YYYY-MM-DD")


def _add_engine(p: argparse.ArgumentParser, patch: int, overlap: int, batch: int) -> None:
    p.add_argument("--patch", type=int, default=patch, help="input window size in pixels")
    p.add_argument("--overlap", type=int, default=overlap, help="overlap between windows (px)")
    p.add_argument("--batch", type=int, default=batch, help="windows per forward pass")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="tilepipe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tilepipe {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STEP")

    p = sub.add_parser("demo", help="generate the embedded demo campaign")
    p.add_argument("--out", required=True)
    p.add_argument("--tiles", nargs="*")
    p.add_argument("--dates", nargs="*")
    p.add_argument("--size", type=int, default=160, help="window side in 10 m pixels")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("search", help="search scenes and write the scene manifest")
    p.add_argument("--catalog", required=True, help="STAC API URL or static catalog.json")
    p.add_argument("--collection", default=None, help="default: the provider's current one")
    p.add_argument("--tiles", nargs="+", required=True)
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--max-cloud", type=float, default=60.0)
    p.add_argument("--max-dates", type=int, default=None, help="best N dates per tile")
    p.add_argument("--window", default=None, help="rank by cloud over this window (or aoi:...)")
    p.add_argument("--source", default=None, help="config `source` mapping as JSON or @file")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("download", help="fetch one scene into s2.tif and scl.tif")
    _add_common(p)
    p.add_argument("--manifest", required=True)
    p.add_argument(
        "--window", default=None, help="col_off,row_off,width,height, 'full' or aoi:MARGIN_M:AOI"
    )
    p.add_argument("--source", default=None, help="config `source` mapping as JSON or @file")
    p.add_argument("--s2", required=True)
    p.add_argument("--scl", required=True)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("superres", help="10x super-resolution of s2.tif into dr.tif")
    _add_common(p)
    p.add_argument("--s2", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--method", choices=["model", "bicubic"], default="model")
    p.add_argument("--model", default=None, help="model .pt (with .json sidecar)")
    _add_engine(p, 64, 16, 8)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--no-resume", dest="resume", action="store_false", help="ignore and keep no journal"
    )
    p.add_argument("--cog", action="store_true", help="write a Cloud-Optimised GeoTIFF")
    p.add_argument("--overviews", action="store_true", help="add overviews (average)")
    p.add_argument("--aoi", default=None, help="minx,miny,maxx,maxy (raster CRS) or 'full'")
    p.add_argument("--aoi-margin", type=int, default=0, help="AOI margin in 10 m pixels")
    p.set_defaults(func=cmd_superres)

    p = sub.add_parser("fields", help="delineate fields on dr.tif or s2.tif into fields.gpkg")
    _add_common(p)
    p.add_argument("--dr", "--image", dest="dr", required=True, help="dr.tif (1 m) or s2.tif")
    p.add_argument("--out", required=True, help="fields.gpkg")
    p.add_argument("--parquet", default=None, help="also write the fields as GeoParquet here")
    p.add_argument("--model", required=True)
    p.add_argument("--threshold", type=float, default=0.5, help="extent probability")
    p.add_argument("--seed-threshold", type=float, default=0.5, help="extent - boundary")
    p.add_argument("--min-area-m2", type=float, default=2000.0)
    p.add_argument("--max-area-m2", type=float, default=None)
    p.add_argument("--simplify-m", type=float, default=1.0)
    p.add_argument("--fill-holes-m2", type=float, default=0.0, help="fill smaller holes")
    p.add_argument("--block", type=int, default=1024, help="polygonisation block (px, x16)")
    p.add_argument("--halo", type=int, default=32, help="context around each block (px)")
    _add_engine(p, 256, 32, 4)
    p.set_defaults(func=cmd_fields)

    p = sub.add_parser("qc", help="quality checks of one tile-date into qc.json")
    _add_common(p)
    for name in ("s2", "scl", "dr", "fields", "out"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--thresholds", default=None, help="JSON object or @file overriding defaults")
    p.set_defaults(func=cmd_qc)

    p = sub.add_parser("embeddings", help="TESSERA embeddings of a tile-year on the tile grid")
    _add_common(p, date=False)
    p.add_argument("--year", type=int, required=True)
    p.add_argument("--source", required=True, help="TESSERA root (with registry.tsv) or AEF root")
    p.add_argument("--kind", choices=("tessera", "aef"), default="tessera")
    p.add_argument(
        "--dequantise", choices=("signed_square", "linear"), default="signed_square", help="AEF"
    )
    p.add_argument("--window", default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_embeddings)

    p = sub.add_parser("train", help="train the CatBoost crop classifier")
    p.add_argument("--labels", required=True)
    p.add_argument("--embeddings", nargs="+", required=True, help="TILE=embeddings.tif ...")
    p.add_argument("--model-out", required=True)
    p.add_argument("--metrics-out", required=True)
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class-weights", choices=("balanced", "none"), default="balanced")
    p.add_argument("--spatial-block-m", type=float, default=None, help="spatial hold-out blocks")
    p.add_argument("--task-type", choices=("auto", "CPU", "GPU"), default="auto")
    p.add_argument("--baseline-k", type=int, default=5, help="k of the kNN baseline")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("classify", help="crop class per field into fields_classified.gpkg")
    _add_common(p)
    p.add_argument("--fields", required=True)
    p.add_argument("--embeddings", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--qc", default=None, help="qc.json: a failed scene is not classified")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("class-raster", help="per-pixel crop class GeoTIFF of a tile-year")
    _add_common(p, date=False)
    p.add_argument("--year", type=int, required=True)
    p.add_argument("--embeddings", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_class_raster)

    p = sub.add_parser("qc-classification", help="QC of fields_classified.gpkg into JSON")
    _add_common(p)
    p.add_argument("--classified", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--thresholds", default=None, help="JSON object or @file overriding defaults")
    p.set_defaults(func=cmd_qc_classification)

    p = sub.add_parser("quicklook", help="PNG quicklooks of a scene for the report")
    for name in ("s2", "dr", "fields", "rgb", "dr-png", "fields-png"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--size", type=int, default=800, help="longest side of the PNGs")
    p.set_defaults(func=cmd_quicklook)

    p = sub.add_parser("qc-summary", help="campaign QC table (TSV + HTML) for the report")
    p.add_argument("--qc", nargs="+", required=True)
    p.add_argument("--metrics", default=None, help="classifier metrics JSON")
    p.add_argument("--out", required=True, help="output .html (a .tsv is written beside)")
    p.add_argument("--classification-qc", nargs="*", default=None)
    p.add_argument("--summary-csv", default=None)
    p.add_argument("--status-png", default=None)
    p.add_argument("--values-png", default=None)
    p.add_argument("--confusion-png", default=None)
    p.set_defaults(func=cmd_qc_summary)

    p = sub.add_parser("status", help="done / failed / pending per tile-date, from disk")
    p.add_argument("--workdir", default=".", help="the campaign's working directory")
    p.add_argument("--manifest", default=None, help="default: WORKDIR/manifests/scenes.csv")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--targets",
        nargs="+",
        choices=STATES,
        help="print Snakemake targets that redo the tile-dates in these states",
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("plan", help="jobs, sbatch calls, GPU-hours, billing and storage")
    p.add_argument("--configfile", default="config/config.yaml")
    p.add_argument("--profile", default=None, help="profile directory, e.g. profiles/lumi")
    p.add_argument("--manifest", default="manifests/scenes.csv")
    p.add_argument("--tiles-count", type=int, default=0, help="size a hypothetical campaign")
    p.add_argument("--dates-per-tile", type=int, default=1)
    p.add_argument("--window", default=None, help="'full' or WIDTH,HEIGHT in 10 m pixels")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plan)
    return parser


def _on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into an exception: outputs in progress unwind and resume state is kept."""
    raise Terminated("SIGTERM (preemption or time limit); resume state kept, rerun to continue")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tilepipe`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from tilepipe.acquire.transfer import RedactingFilter, proxy_environment, redact

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    os.environ.update(proxy_environment(os.environ))
    func: Callable[[argparse.Namespace], None] = args.func
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        func(args)
    except Terminated as exc:
        print(f"tilepipe {args.command}: terminated: {exc}", file=sys.stderr)
        return 128 + signal.SIGTERM  # the status a shell reports for SIGTERM; Slurm requeues
    except TilepipeError as exc:
        print(f"tilepipe {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's fault, not the data's: full disk, permissions, I/O
        where = context(getattr(args, "tile", None), getattr(args, "date", None))
        print(f"tilepipe {args.command}: error: {where}{redact(str(exc))}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info("tilepipe %s finished in %.1f s", args.command, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
