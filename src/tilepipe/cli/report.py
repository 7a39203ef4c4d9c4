"""``tilepipe quicklook`` (config section ``report``) and ``qc-summary``: report artefacts."""

from __future__ import annotations

import argparse

from tilepipe.cli.options import add_manifest_outputs, add_settings, manifest_outputs, step_settings
from tilepipe.core.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``quicklook`` and ``qc-summary`` subcommands."""
    p = sub.add_parser("quicklook", help="PNG quicklooks of a scene for the report")
    for name in ("s2", "dr", "fields", "rgb", "dr-png", "fields-png"):
        p.add_argument(f"--{name}", required=True)
    add_settings(p, "report", ("quicklook_size",), aliases={"quicklook_size": ("--size",)})
    p.set_defaults(func=run_quicklook)

    p = sub.add_parser("qc-summary", help="campaign QC table (TSV + HTML) for the report")
    p.add_argument("--qc", nargs="*", default=[], help="qc.json files (and/or --manifest)")
    p.add_argument("--metrics", default=None, help="classifier metrics JSON")
    p.add_argument("--out", required=True, help="output .html (a .tsv is written beside)")
    p.add_argument("--classification-qc", nargs="*", default=None)
    p.add_argument(
        "--with-classification-qc",
        action="store_true",
        help="with --manifest: also read each tile-date's classification_qc.json",
    )
    add_manifest_outputs(p, "qc.json")
    p.add_argument("--summary-csv", default=None)
    for name in ("status", "values", "confusion"):
        p.add_argument(f"--{name}-png", default=None)
    p.set_defaults(func=run_qc_summary)


def run_quicklook(args: argparse.Namespace) -> None:
    """Write the scene's RGB, DR and fields PNGs."""
    from tilepipe.report.quicklooks import quicklooks

    quicklooks(
        args.s2,
        args.dr,
        args.fields,
        rgb=args.rgb,
        dr_png=args.dr_png,
        fields_png=args.fields_png,
        size=step_settings(args)["quicklook_size"],
    )


def run_qc_summary(args: argparse.Namespace) -> None:
    """Write the campaign's QC table, CSV and plots."""
    from tilepipe.report.summary import qc_summary

    names = ("status", "values", "confusion")
    plots = {name: getattr(args, f"{name}_png") for name in names if getattr(args, f"{name}_png")}
    qc = [*args.qc, *manifest_outputs(args.manifest, args.results, "qc.json")]
    if not qc:
        raise ConfigError("qc-summary: no qc.json given (--qc or --manifest)")
    classification_qc = args.classification_qc
    if args.with_classification_qc:
        by_manifest = manifest_outputs(args.manifest, args.results, "classification_qc.json")
        classification_qc = [*(classification_qc or []), *by_manifest]
    qc_summary(
        qc,
        args.out,
        metrics=args.metrics,
        classification_qc=classification_qc,
        summary_csv=args.summary_csv,
        plots=plots,
    )
