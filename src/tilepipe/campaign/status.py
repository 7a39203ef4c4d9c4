"""Campaign status per tile-date from what is on disk: outputs, step logs, Snakemake's records.

Nothing is re-planned and no DAG is built, so it answers in a second for 10⁴ scenes and works
while a campaign runs. A step is *done* when all its outputs exist and Snakemake has no
incomplete marker for them; *incomplete* when Snakemake marked an output as being written and
that output exists (Snakemake redoes exactly these: a marker without its file is just a missing
output to it), or when its outputs are marked while a Snakemake runs here (being written now);
*failed* when its log or Snakemake's run log reports an error and its outputs are missing, else
*pending*. So after a killed run, what status calls incomplete or pending is what the next
`snakemake -n` plans to do.

Temporaries that killed steps left behind (:mod:`tilepipe.core.scratch`) are counted per
tile-date in bytes: they hold quota until the next run of their step removes them.
"""

from __future__ import annotations

import csv
import re
from base64 import urlsafe_b64encode
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tilepipe.campaign.locks import snakemake_running
from tilepipe.core.scratch import leftovers

#: Per-scene steps in the order they run, with the files each writes under results/{tile}/{date}.
SCENE_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("download", ("s2.tif", "scl.tif")),
    ("superres", ("dr.tif",)),
    ("fields", ("fields.gpkg",)),
    ("qc", ("qc.json",)),
    ("quicklook", ("quicklook_rgb.png", "quicklook_dr.png", "quicklook_fields.png")),
    ("classify", ("fields_classified.gpkg",)),
    ("qc_classification", ("classification_qc.json",)),
)
_SCENE_PATH = re.compile(r"results/(\d{2}[A-Z]{3})/(\d{4}-\d{2}-\d{2})/")
_TILEPIPE_ERROR = re.compile(r"^tilepipe [\w-]+: error: (.*)$", re.M)
_LAST_EXCEPTION = re.compile(r"^(\w+(?:Error|Exception)\b.*)$", re.M)


@dataclass
class SceneStatus:
    """Where one tile-date stands: its state, the step it is at and, for a failure, why."""

    tile: str
    date: str
    state: str  # done | failed | incomplete | pending
    step: str = ""
    cause: str = ""
    qc: str = ""
    steps: dict[str, str] = field(default_factory=dict)
    leftover_bytes: int = 0  # temporaries of killed steps in the tile-date's folder


def incomplete_marker(workdir: Path, path: str) -> Path:
    """Snakemake's marker for an output being written (its file persistence layout)."""
    b64 = urlsafe_b64encode(path.encode()).decode()
    parts = [b64[i : i + 254] for i in range(0, len(b64), 254)]
    parts = ["@" + p for p in parts[:-1]] + [parts[-1]]
    return workdir / ".snakemake" / "incomplete" / Path(*parts)


def log_error(path: Path) -> str:
    """The error a step's log ends with: tilepipe's one-line message, else the last exception."""
    if not path.is_file():
        return ""
    text = path.read_text(errors="replace")
    found = _TILEPIPE_ERROR.findall(text) or _LAST_EXCEPTION.findall(text)
    return found[-1].strip() if found else ""


def snakemake_errors(workdir: Path) -> dict[tuple[str, str, str], str]:
    """(rule, tile, date) → message of jobs Snakemake reported failed, newest run log last."""
    errors: dict[tuple[str, str, str], str] = {}
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    for log in logs:
        blocks = re.split(r"^(?=Error in rule )", log.read_text(errors="replace"), flags=re.M)
        for block in blocks[1:]:
            rule = re.match(r"Error in rule ([\w-]+):", block)
            scene = _SCENE_PATH.search(block)
            if not (rule and scene):
                continue
            message = re.search(r"^\s+message: (.+)$", block, re.M)
            text = message.group(1).strip() if message else "job failed"
            errors[(rule.group(1), scene.group(1), scene.group(2))] = text
    return errors


def read_scenes(manifest: Path) -> list[tuple[str, str]]:
    """The campaign's tile-dates from the scene manifest."""
    with open(manifest, newline="") as fh:
        return [(row["tile"], row["date"]) for row in csv.DictReader(fh)]


def step_state(workdir: Path, paths: list[str], cause: str, running: bool) -> str:
    """done / incomplete / failed / pending of one step's outputs (see the module docstring)."""
    exists = {p: (workdir / p).is_file() for p in paths}
    marked = [p for p in paths if incomplete_marker(workdir, p).exists()]
    if all(exists.values()) and not marked:
        return "done"
    if any(exists[p] for p in marked) or (marked and running):
        return "incomplete"
    return "failed" if cause else "pending"


def scene_status(
    workdir: Path,
    tile: str,
    date: str,
    errors: dict[tuple[str, str, str], str],
    running: bool = False,
) -> SceneStatus:
    """The status of one tile-date, step by step (``running``: a Snakemake runs here now)."""
    status = SceneStatus(tile, date, "done")
    for step, names in SCENE_STEPS:
        paths = [f"results/{tile}/{date}/{name}" for name in names]
        cause = log_error(workdir / "logs" / step / tile / f"{date}.log")
        cause = cause or errors.get((step, tile, date), "")
        state = step_state(workdir, paths, cause, running)
        status.steps[step] = state
        if state != "done" and status.state == "done":
            status.state, status.step = state, step
            status.cause = cause if state == "failed" else ""
    qc = workdir / "results" / tile / date / "qc.json"
    if status.steps.get("qc") == "done":
        match = re.search(r'"status":\s*"(\w+)"', qc.read_text(errors="replace"))
        status.qc = match.group(1) if match else ""
    return status


def campaign_status(
    workdir: Path, manifest: Path | None = None, found: dict[Path, int] | None = None
) -> list[SceneStatus]:
    """The status of every tile-date of the campaign in `workdir`.

    ``found``: its leftover temporaries with their sizes (default: looked up under results/).
    """
    manifest = manifest or workdir / "manifests" / "scenes.csv"
    errors = snakemake_errors(workdir)
    running = snakemake_running(workdir)
    statuses = [scene_status(workdir, t, d, errors, running) for t, d in read_scenes(manifest)]
    found = leftovers(workdir / "results") if found is None else found
    by_scene = {(s.tile, s.date): s for s in statuses}
    for path, size in found.items():
        match = _SCENE_PATH.search(path.relative_to(workdir).as_posix())
        scene = by_scene.get(match.groups()) if match else None
        if scene is not None:
            scene.leftover_bytes += size
    return statuses


@dataclass
class SeasonStatus:
    """Where one tile-season's fused field layer stands, and the dates it is made of."""

    tile: str
    season: str
    state: str  # done | failed | incomplete | pending
    step: str = ""
    dates: list[str] = field(default_factory=list)
    cause: str = ""
    tiles: list[str] = field(default_factory=list)  # the campaign layer's: the tiles it joins


#: The campaign layer of a season (tile ``campaign``): its step and the files it writes under
#: results/campaign/season/{season}.
CAMPAIGN_SEASON_STEP = ("campaign_fields", ("fields.gpkg", "dedupe.json"))

#: Per tile-season steps in the order they run, with the files each writes under
#: results/{tile}/season/{season}.
SEASON_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("season_fields", ("fields.gpkg",)),
    ("season_classify", ("fields_classified.gpkg",)),
    ("season_qc_classification", ("classification_qc.json",)),
)


def season_status(
    workdir: Path,
    scenes: list[tuple[str, str]],
    seasons: dict[str, tuple[str, str]],
    running: bool = False,
) -> list[SeasonStatus]:
    """The status of every tile-season holding at least one scene (``seasons``: name -> first,
    last day), step by step from its files and logs (the first step not done sets it)."""
    held: dict[tuple[str, str], list[str]] = {}
    for tile, day in scenes:
        for name, (lo, hi) in seasons.items():
            if lo <= day <= hi:
                held.setdefault((tile, name), []).append(day)
    out = []
    for (tile, name), days in sorted(held.items()):
        status = SeasonStatus(tile, name, "done", dates=sorted(days))
        for step, files in SEASON_STEPS:
            paths = [f"results/{tile}/season/{name}/{f}" for f in files]
            cause = log_error(workdir / "logs" / step / tile / f"{name}.log")
            state = step_state(workdir, paths, cause, running)
            if state != "done":
                status.state, status.step = state, step
                status.cause = cause if state == "failed" else ""
                break
        out.append(status)
    return out + _campaign_layers(workdir, held, running)


def _campaign_layers(
    workdir: Path, held: dict[tuple[str, str], list[str]], running: bool
) -> list[SeasonStatus]:
    """The status of each season's campaign layer (tile ``campaign``), which joins the
    season's tiles once each of theirs is done."""
    step, files = CAMPAIGN_SEASON_STEP
    out = []
    for name in sorted({s for _, s in held}):
        tiles = sorted(t for t, s in held if s == name)
        days = sorted({d for (t, s), ds in held.items() if s == name for d in ds})
        paths = [f"results/campaign/season/{name}/{f}" for f in files]
        cause = log_error(workdir / "logs" / step / f"{name}.log")
        state = step_state(workdir, paths, cause, running)
        status = SeasonStatus("campaign", name, state, dates=days, tiles=tiles)
        if state != "done":
            status.step, status.cause = step, cause if state == "failed" else ""
        out.append(status)
    return out


def targets(statuses: Iterable[SceneStatus], states: set[str]) -> list[str]:
    """Snakemake targets that redo the scenes in `states` (their last per-scene outputs)."""
    return [
        f"results/{s.tile}/{s.date}/{name}"
        for s in statuses
        if s.state in states
        for name in ("qc.json", "quicklook_rgb.png", "fields_classified.gpkg")
    ]
