"""``tilepipe status``: done / failed / pending per tile-date and leftover bytes, from disk."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tilepipe.core.errors import ConfigError

STATES = ("done", "failed", "incomplete", "pending")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``status`` subcommand."""
    p = sub.add_parser("status", help="done / failed / pending per tile-date, from disk")
    p.add_argument("--workdir", default=".", help="the campaign's working directory")
    p.add_argument("--manifest", default=None, help="default: WORKDIR/manifests/scenes.csv")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--config",
        default=None,
        help="the campaign config, for its season windows (default: WORKDIR/config/config.yaml)",
    )
    p.add_argument(
        "--targets",
        nargs="+",
        choices=STATES,
        help="print Snakemake targets that redo the tile-dates in these states",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Print each tile-date's state (or the targets that redo some of them)."""
    from tilepipe.campaign.status import campaign_status, targets
    from tilepipe.core.scratch import leftovers

    workdir = Path(args.workdir)
    manifest = Path(args.manifest) if args.manifest else workdir / "manifests" / "scenes.csv"
    if not manifest.is_file():
        raise ConfigError(f"file {manifest}: no scene manifest yet (the search has not run)")
    found = leftovers(workdir / "results")
    statuses = campaign_status(workdir, manifest, found)
    if args.targets:
        print("\n".join(targets(statuses, set(args.targets))))
        return
    seasons = _season_statuses(workdir, args.config, [(s.tile, s.date) for s in statuses])
    if args.json:
        print(json.dumps([s.__dict__ for s in statuses], indent=1))
        return
    for s in statuses:
        detail = f"{s.step}: {s.cause}" if s.cause else s.step
        qc = f" (qc {s.qc})" if s.qc else ""
        held = f" [leftovers {_size(s.leftover_bytes)}]" if s.leftover_bytes else ""
        print(f"{s.tile}  {s.date}  {s.state:<10}{qc} {detail}".rstrip() + held)
    for s in seasons:
        detail = f"{s.step}: {s.cause}" if s.cause else s.step
        held = f"{len(s.tiles)} tiles" if s.tiles else f"{len(s.dates)} dates"
        print(f"{s.tile}  season {s.season} ({held})  {s.state:<10} {detail}".rstrip())
    counts = {state: sum(s.state == state for s in statuses) for state in STATES}
    line = ", ".join(f"{n} {state}" for state, n in counts.items()) + f" of {len(statuses)}"
    if found:
        line += (
            f"; {len(found)} leftover temporaries of killed steps hold "
            f"{_size(sum(found.values()))} (the next run of their step removes them)"
        )
    print(line)  # the summary of the scenes stays the last line


def _season_statuses(workdir: Path, config: str | None, scenes: list[tuple[str, str]]) -> list:
    """The tile-seasons' states, with the season windows of the campaign's config (none when
    the config is absent or season layers are off)."""
    import yaml

    from tilepipe.campaign.locks import snakemake_running
    from tilepipe.campaign.seasons import season_windows
    from tilepipe.campaign.status import season_status
    from tilepipe.core.settings import section_defaults

    path = Path(config) if config else workdir / "config" / "config.yaml"
    if not path.is_file():
        return []
    cfg = yaml.safe_load(path.read_text()) or {}
    season = {**section_defaults("season"), **(cfg.get("season") or {})}
    if not season["enabled"]:
        return []
    dates = cfg.get("dates") or {}
    windows = season_windows(season["windows"], dates.get("start", ""), dates.get("end", ""))
    return season_status(workdir, scenes, windows, snakemake_running(workdir))


def _size(n: int) -> str:
    """Bytes for people: B, KB, MB, GB, TB (powers of 1000, as quotas are quoted)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
