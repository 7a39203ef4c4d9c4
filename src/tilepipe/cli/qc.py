"""``tilepipe qc`` and ``qc-classification``: QC verdicts into JSON (config section ``qc``)."""

from __future__ import annotations

import argparse
import logging

from tilepipe.cli.options import add_settings, add_tile_date, step_settings

log = logging.getLogger("tilepipe")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``qc`` and ``qc-classification`` subcommands."""
    p = sub.add_parser("qc", help="quality checks of one tile-date into qc.json")
    add_tile_date(p)
    for name in ("s2", "scl", "dr", "fields", "out"):
        p.add_argument(f"--{name}", required=True)
    add_settings(p, "qc", settings_aliases=("--thresholds",))
    p.set_defaults(func=run)

    p = sub.add_parser("qc-classification", help="QC of fields_classified.gpkg into JSON")
    add_tile_date(p)
    p.add_argument("--classified", required=True)
    p.add_argument("--out", required=True)
    add_settings(p, "qc", settings_aliases=("--thresholds",))
    p.set_defaults(func=run_classification)


def _write(report: dict, args: argparse.Namespace, what: str) -> None:
    """Write the report and log every check that did not pass."""
    from tilepipe.qc.checks import write_qc

    write_qc(report, args.out)
    for check in report["checks"]:
        if check["status"] != "pass":
            log.warning("qc %s: %s", check["name"], check["message"])
    log.info("%s %s %s: %s", what, args.tile, args.date, report["status"])


def run(args: argparse.Namespace) -> None:
    """Check one scene's rasters and fields against the section's thresholds."""
    from tilepipe.qc.scene import run_qc

    report = run_qc(
        tile=args.tile,
        date=args.date,
        s2_path=args.s2,
        scl_path=args.scl,
        dr_path=args.dr,
        fields_path=args.fields,
        thresholds=step_settings(args),
    )
    _write(report, args, "qc")


def run_classification(args: argparse.Namespace) -> None:
    """Check one scene's classified fields against the section's thresholds."""
    from tilepipe.classify.quality import run_classification_qc

    report = run_classification_qc(
        tile=args.tile,
        date=args.date,
        classified_path=args.classified,
        thresholds=step_settings(args),
    )
    _write(report, args, "classification qc")
