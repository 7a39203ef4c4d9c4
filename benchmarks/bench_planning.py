"""Dry-run time of tilepipe's workflow against a bare Snakemake workflow of the same DAG shape.

Both plan the same campaign (default 1,000 tiles × 10 dates from a ready scene manifest): the
same rules, wildcards, checkpoint and files (inputs, outputs, logs, benchmarks); the bare one
has trivial shell commands and no params, resources, containers or input functions beyond
reading the manifest. Target (issue 7): tilepipe ≤ 1.2× bare.

    .venv/bin/python benchmarks/bench_planning.py [--tiles 1000] [--dates 10] [--repeat 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tilepipe.core.grid import validate_tile

REPO = Path(__file__).resolve().parents[1]
LETTERS_COL = "ABCDEFGHJKLMNPQRSTUVWXYZ"
LETTERS_ROW = "ABCDEFGHJKLMNPQRSTUV"

BARE_SNAKEFILE = """
import csv
configfile: "campaign.yaml"
TILES = config["tiles"]
SCENE = "results/{tile}/{date}"
wildcard_constraints:
    tile=r"\\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2}",
    date=r"\\d{4}-\\d{2}-\\d{2}",
    year=r"\\d{4}",
checkpoint search_scenes:
    output: manifest="manifests/scenes.csv"
    shell: "touch {output}"
def scenes():
    with open(checkpoints.search_scenes.get().output.manifest) as fh:
        return [(r["tile"], r["date"]) for r in csv.DictReader(fh)]
def final_outputs(wildcards):
    names = ["qc.json", "fields_classified.gpkg", "quicklook_rgb.png"]
    return [f"results/{t}/{d}/{n}" for t, d in scenes() for n in names] + [
        "results/qc_summary.html", "results/models/classifier.cbm"]
rule all:
    default_target: True
    input: final_outputs
rule download:
    input: ancient("manifests/scenes.csv")
    output: s2=f"{SCENE}/s2.tif", scl=f"{SCENE}/scl.tif"
    shell: "touch {output}"
rule superres:
    input: f"{SCENE}/s2.tif"
    output: f"{SCENE}/dr.tif"
    shell: "touch {output}"
rule fields:
    input: f"{SCENE}/dr.tif"
    output: f"{SCENE}/fields.gpkg"
    shell: "touch {output}"
rule qc:
    input: f"{SCENE}/s2.tif", f"{SCENE}/scl.tif", f"{SCENE}/dr.tif", f"{SCENE}/fields.gpkg"
    output: f"{SCENE}/qc.json"
    shell: "touch {output}"
rule quicklook:
    input: f"{SCENE}/s2.tif", f"{SCENE}/dr.tif", f"{SCENE}/fields.gpkg"
    output: f"{SCENE}/quicklook_rgb.png", f"{SCENE}/quicklook_dr.png",
        f"{SCENE}/quicklook_fields.png"
    shell: "touch {output}"
rule embeddings:
    output: "results/{tile}/{year}/embeddings.tif"
    shell: "touch {output}"
rule train_classifier:
    input: expand("results/{tile}/{year}/embeddings.tif", tile=TILES, year=config["year"])
    output: "results/models/classifier.cbm"
    shell: "touch {output}"
rule classify:
    input: fields=f"{SCENE}/fields.gpkg", model="results/models/classifier.cbm",
        embeddings=lambda w: f"results/{w.tile}/{w.date[:4]}/embeddings.tif"
    output: f"{SCENE}/fields_classified.gpkg"
    shell: "touch {output}"
rule qc_classification:
    input: f"{SCENE}/fields_classified.gpkg"
    output: f"{SCENE}/classification_qc.json"
    shell: "touch {output}"
def summary_inputs(wildcards):
    names = ("qc.json", "classification_qc.json")
    return [f"results/{t}/{d}/{n}" for t, d in scenes() for n in names]
rule qc_summary:
    input: summary_inputs
    output: "results/qc_summary.html"
    shell: "touch {output}"
"""


#: Log and benchmark files of each rule, as in workflow/rules/*.smk (part of the DAG's files).
LOGGED = {
    "download": "{tile}/{date}",
    "superres": "{tile}/{date}",
    "fields": "{tile}/{date}",
    "qc": "{tile}/{date}",
    "quicklook": "{tile}/{date}",
    "embeddings": "{tile}/{year}",
    "train_classifier": "classifier",
    "classify": "{tile}/{date}",
    "qc_classification": "{tile}/{date}",
    "qc_summary": "summary",
    "search_scenes": "search",
}


def with_logs(snakefile: str) -> str:
    """Give every rule of `snakefile` the log and benchmark files tilepipe's rule has."""
    out = []
    for line in snakefile.splitlines():
        out.append(line)
        name = line.removeprefix("rule ").removeprefix("checkpoint ").rstrip(":")
        if line.endswith(":") and name in LOGGED:
            out.append(f'    log: "logs/{name}/{LOGGED[name]}.log"')
            out.append(f'    benchmark: "benchmarks/rules/{name}/{LOGGED[name]}.tsv"')
    return "\n".join(out) + "\n"


def tile_ids(n: int) -> list[str]:
    """`n` valid MGRS tile ids (zones 29-38 over Europe's latitude bands)."""
    out = []
    for zone in range(29, 39):
        for band in "TUVW":
            for col in LETTERS_COL:
                for row in LETTERS_ROW:
                    tile = f"{zone}{band}{col}{row}"
                    try:
                        validate_tile(tile)
                    except Exception:
                        continue
                    out.append(tile)
                    if len(out) == n:
                        return out
    raise ValueError(f"fewer than {n} tile ids")


def write_manifest(path: Path, tiles: list[str], dates: int) -> None:
    """A scene manifest as the search step writes it, `dates` dates per tile in 2022."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["tile", "date", "item_id", "collection", "cloud_cover", "nodata_pct"]
    fields += ["baseline", "boa_offset_dn", "assets", "reason"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for tile in tiles:
            for d in range(dates):
                date = f"2022-{1 + d % 12:02d}-{1 + d // 12 * 2:02d}"
                assets = {b: f"https://example.invalid/{tile}/{date}/{b}.tif" for b in ("B02",)}
                writer.writerow(
                    {
                        "tile": tile,
                        "date": date,
                        "item_id": f"S2B_{tile}_{date.replace('-', '')}_0_L2A",
                        "collection": "sentinel-2-l2a",
                        "cloud_cover": 5.0,
                        "nodata_pct": 0.0,
                        "baseline": "05.09",
                        "boa_offset_dn": 1000,
                        "assets": json.dumps(assets),
                        "reason": "benchmark",
                    }
                )


def dry_run(workdir: Path, extra: list[str]) -> float:
    """Seconds of `snakemake --dry-run --quiet` in `workdir`."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1", *extra]
    started = time.perf_counter()
    run = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"dry-run failed in {workdir}:\n{(run.stdout + run.stderr)[-4000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=1000)
    parser.add_argument("--dates", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs each")
    args = parser.parse_args()
    tiles = tile_ids(args.tiles)
    with tempfile.TemporaryDirectory(prefix="tilepipe-bench-planning-") as tmp:
        ours, bare = Path(tmp) / "tilepipe", Path(tmp) / "bare"
        ours.mkdir()
        bare.mkdir()
        for name in ("Snakefile", "workflow", "config", "models", "envs"):
            src = REPO / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, ours / name)
        (ours / "labels.gpkg").write_text("")
        (ours / "catalog.json").write_text("{}")
        campaign = {
            "tiles": tiles,
            "demo": {"generate": False, "out": "demo_data", "size": 160, "seed": 0},
            "window": {"col_off": 0, "row_off": 0, "width": 200, "height": 200},
            "source": {"catalog": "catalog.json"},
            "classify": {"labels": "labels.gpkg", "year": 2022},
        }
        (ours / "campaign.yaml").write_text(yaml.safe_dump(campaign))
        (bare / "campaign.yaml").write_text(yaml.safe_dump({"tiles": tiles, "year": 2022}))
        (bare / "Snakefile").write_text(with_logs(BARE_SNAKEFILE))
        for work in (ours, bare):
            write_manifest(work / "manifests" / "scenes.csv", tiles, args.dates)
        jobs = args.tiles * args.dates
        t_ours = min(dry_run(ours, ["--configfile", "campaign.yaml"]) for _ in range(args.repeat))
        t_bare = min(dry_run(bare, []) for _ in range(args.repeat))
    print(f"campaign: {args.tiles} tiles x {args.dates} dates = {jobs} tile-dates")
    print(f"dry-run tilepipe: {t_ours:.1f} s")
    print(f"dry-run bare    : {t_bare:.1f} s")
    print(f"ratio tilepipe/bare: {t_ours / t_bare:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
