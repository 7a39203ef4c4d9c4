"""The ``tilepipe`` command: one subcommand per workflow step, each usable without Snakemake.

Errors tilepipe expects (bad input, bad model, bad config) print one line naming the tile, date,
file and cause, and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tilepipe import __version__
from tilepipe.errors import ConfigError, Terminated, TilepipeError

log = logging.getLogger("tilepipe")


def _window(text: str | None) -> tuple[int, int, int, int] | None:
    """Parse ``col_off,row_off,width,height`` (10 m pixels of the tile), or ``full``."""
    if text is None or text in ("", "full", "none", "None"):
        return None
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
    from tilepipe.demo import DEMO_DATES, DEMO_TILES, generate_campaign

    out = generate_campaign(
        args.out,
        tiles=tuple(args.tiles or DEMO_TILES),
        dates=tuple(args.dates or DEMO_DATES),
        size=args.size,
        seed=args.seed,
    )
    log.info("demo campaign written: %s", json.dumps(out))


def cmd_search(args: argparse.Namespace) -> None:
    from tilepipe import stac

    items = stac.find_items(
        args.catalog, collection=args.collection, tiles=args.tiles, start=args.start, end=args.end
    )
    records = stac.select_scenes(items, max_cloud=args.max_cloud, max_dates_per_tile=args.max_dates)
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
    from tilepipe.download import download_scene
    from tilepipe.stac import manifest_row

    row = manifest_row(args.manifest, args.tile, args.date)
    download_scene(row, args.s2, args.scl, window=_window(args.window))


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
    from tilepipe.fields import run_fields

    n = run_fields(
        args.dr,
        args.out,
        model_path=args.model,
        threshold=args.threshold,
        min_area_m2=args.min_area_m2,
        **_engine_kwargs(args),
    )
    log.info("%d fields -> %s", n, args.out)


def cmd_qc(args: argparse.Namespace) -> None:
    from tilepipe.qc import merge_thresholds, run_qc, write_qc

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
    from tilepipe.embeddings import build_tile_embeddings
    from tilepipe.grid import tile_grid

    grid = tile_grid(args.tile)
    window = _window(args.window)
    transform, width, height = (
        grid.window(*window) if window else (grid.transform, grid.size, grid.size)
    )
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
    from tilepipe.classify import train_classifier

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
    )
    log.info("classifier trained: %s", json.dumps(metrics, default=str))


def cmd_classify(args: argparse.Namespace) -> None:
    from tilepipe.classify import classify_fields

    n = classify_fields(
        args.fields, args.embeddings, args.model, args.out, tile=args.tile, date=args.date
    )
    log.info("%d fields classified -> %s", n, args.out)


def cmd_quicklook(args: argparse.Namespace) -> None:
    from tilepipe.report import quicklooks

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
    from tilepipe.report import qc_summary

    qc_summary(args.qc, args.out, metrics=args.metrics)


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
    p.add_argument("--collection", default="sentinel-2-l2a")
    p.add_argument("--tiles", nargs="+", required=True)
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--max-cloud", type=float, default=60.0)
    p.add_argument("--max-dates", type=int, default=None, help="best N dates per tile")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("download", help="fetch one scene into s2.tif and scl.tif")
    _add_common(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--window", default=None, help="col_off,row_off,width,height or 'full'")
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

    p = sub.add_parser("fields", help="delineate fields on dr.tif into fields.gpkg")
    _add_common(p)
    p.add_argument("--dr", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--min-area-m2", type=float, default=2000.0)
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
    p.add_argument("--source", required=True, help="TESSERA root (with registry.tsv)")
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
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("classify", help="crop class per field into fields_classified.gpkg")
    _add_common(p)
    p.add_argument("--fields", required=True)
    p.add_argument("--embeddings", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("quicklook", help="PNG quicklooks of a scene for the report")
    for name in ("s2", "dr", "fields", "rgb", "dr-png", "fields-png"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--size", type=int, default=800, help="longest side of the PNGs")
    p.set_defaults(func=cmd_quicklook)

    p = sub.add_parser("qc-summary", help="campaign QC table (TSV + HTML) for the report")
    p.add_argument("--qc", nargs="+", required=True)
    p.add_argument("--metrics", default=None, help="classifier metrics JSON")
    p.add_argument("--out", required=True, help="output .html (a .tsv is written beside)")
    p.set_defaults(func=cmd_qc_summary)
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
    func: Callable[[argparse.Namespace], None] = args.func
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        func(args)
    except Terminated as exc:
        print(f"tilepipe {args.command}: terminated: {exc}", file=sys.stderr)
        return 128 + signal.SIGTERM  # the status a shell reports for SIGTERM; Slurm requeues
    except TilepipeError as exc:
        print(f"tilepipe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info("tilepipe %s finished in %.1f s", args.command, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
