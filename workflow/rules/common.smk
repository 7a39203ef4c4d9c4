# Shared definitions: wildcard constraints, paths, the scene list read from the manifest.
import functools
import json
import os
import shlex
import sys
from pathlib import Path

import pandas as pd
from snakemake.exceptions import IncompleteCheckpointException
from snakemake.logging import logger

from tilepipe.campaign.config import (
    apply_cluster_env,
    campaign_tiles,
    cluster_problems,
    download_bands,
    fields_dates,
    tile_window_arg,
    window_arg,
)
from tilepipe.campaign.pairs import partners, unpaired_reason
from tilepipe.campaign.seasons import season_windows
from tilepipe.campaign.locks import (
    RUN_ENV,
    clear_stale_locks,
    stop_orphans,
    write_owner,
)
from tilepipe.campaign.slurm_arrays import install as install_slurm_array_fix


wildcard_constraints:
    tile=r"\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2}",
    date=r"\d{4}-\d{2}-\d{2}",
    year=r"\d{4}",
    season=r"[A-Za-z0-9_-]+",


CLUSTER = config["cluster"]
CONTAINERS = config["containers"]
# jobs inherit the cluster's environment (TMPDIR off RAM disks, image caches, binds); a real run
# (onstart: never in a dry-run, never inside a job) also creates the directories and needs the
# account variable, so a missing one fails before any submission
_unresolved = apply_cluster_env(CLUSTER["env"], create_dirs=False)


# a Snakemake killed with SIGKILL leaves its lock: remove it when its process is provably gone
# (same host, PID gone or reused), so that rerunning the same command just continues
if workflow.is_main_process:
    _stale = clear_stale_locks(os.getcwd())
    if _stale:
        print(f"tilepipe: {_stale}", file=sys.stderr)


onstart:
    # the jobs a killed Snakemake left running would write beside (and race) this run's: stop
    # them before the first job starts (never in a dry-run: onstart does not run there)
    _orphans = stop_orphans(os.getcwd())
    if _orphans:
        print(f"tilepipe: {_orphans}", file=sys.stderr)
    # this process holds the lock now; its jobs carry its run id, so a rerun can find them
    os.environ[RUN_ENV] = write_owner(os.getcwd())
    problems = cluster_problems(CLUSTER, dict(os.environ))
    executor = getattr(workflow.executor_plugin, "name", "")
    if executor == "slurm" and CLUSTER["name"] == "local":
        problems.append(
            "the Slurm executor runs with cluster.name 'local': a --config on the command line "
            "replaces the profile's whole `config:` (cluster, containers); put campaign "
            "settings in a --configfile, or repeat cluster=... in --config"
        )
    if _unresolved:
        problems.append(
            "cluster.env needs variables that are not set here: "
            + ", ".join(_unresolved)
        )
    if problems:
        raise WorkflowError("cannot submit:\n  - " + "\n  - ".join(problems))
    apply_cluster_env(CLUSTER["env"], create_dirs=True)
    # Slurm runs only, before the first submission: the plugin's job arrays lose no job
    install_slurm_array_fix(executor, logger)
    if POOL:
        start_worker_pool()


# the demo generator and the final target are cheap: never a cluster job
localrules:
    all,
    demo_campaign,
    qc_summary,
    stac_item,
    fields_partition,
    stac_collection,


if CLUSTER["network_local"]:

    # compute nodes without internet: network steps run where the network is (login node)
    localrules:
        search_scenes,
        download,
        embeddings,


MANIFEST = "manifests/scenes.csv"
TILES = campaign_tiles(config)
DEMO = config["demo"]
WINDOW = window_arg(config["window"], config.get("aoi"))


def tile_window(wildcards):
    """The `--window` of a tile's steps: its `windows` entry, else `window` (or the AOI's)."""
    return tile_window_arg(config, wildcards.tile)


def window_overrides():
    """`--tile-window TILE=ARG` for the tiles with a window of their own (`windows`)."""
    if config.get("aoi"):
        return ""
    return " ".join(
        f"--tile-window {t}={tile_window_arg(config, t)}"
        for t in sorted(config["windows"])
    )


# the source's connection budget: each network job holds its share of `<provider>_connections`
# (profiles set the total with `resources:`, e.g. cdse_connections=4)
CONNECTIONS = f"{config['source']['provider']}_connections"
SCENE = "results/{tile}/{date}"
# season windows: name -> (first, last day); one per calendar year of `dates` by default
SEASONS = season_windows(
    config["season"]["windows"], config["dates"]["start"], config["dates"]["end"]
)
SCENES_SCHEMA = str(Path(workflow.basedir) / "workflow/schemas/scenes.schema.yaml")


def settings(section, *wiring):
    """Config `section` as the JSON a step's `--settings` takes (schema defaults filled in by
    validation), less the `wiring` keys that only choose the rule's inputs and outputs. A static
    param: changing the section reruns the step, and planning stays free of per-job code.
    """
    kept = {k: v for k, v in config[section].items() if k not in wiring}
    return json.dumps(kept, sort_keys=True)


def repo_path(path):
    """A path from the config: as given if it exists here, else relative to the workflow."""
    if Path(path).is_absolute() or Path(path).exists():
        return path
    return str(Path(workflow.basedir) / path)


def demo_input(name):
    """The demo file `name` when the demo campaign is generated by the workflow, else nothing."""
    if not DEMO["generate"]:
        return []
    return {
        "catalog": f"{DEMO['out']}/stac/catalog.json",
        "registry": f"{DEMO['out']}/tessera/registry.parquet",
        "labels": f"{DEMO['out']}/labels.gpkg",
    }[name]


@functools.lru_cache(maxsize=4)
def _read_manifest(path, mtime):
    df = pd.read_csv(path, dtype={"tile": str, "date": str, "baseline": str})
    validate(df, SCENES_SCHEMA)
    return df


def manifest():
    """The scene manifest (available once the search checkpoint has run)."""
    path = checkpoints.search_scenes.get().output.manifest
    return _read_manifest(path, Path(path).stat().st_mtime)


@functools.lru_cache(maxsize=4)
def _partners(path, mtime):
    rows = _read_manifest(path, mtime).to_dict("records")
    return partners(rows, config["fields"]["pairing"])


def partner_of(wildcards):
    """A two-date fields model's partner of a scene (fields.pairing), or None."""
    path = checkpoints.search_scenes.get().output.manifest
    found = _partners(path, Path(path).stat().st_mtime)
    return found.get((wildcards.tile, wildcards.date))


def fields_partner(wildcards):
    """The partner scene's image of a two-date model, none without a partner."""
    partner = partner_of(wildcards)
    if not partner:
        return []
    return f"{SCENE}/{FIELDS_IMAGE}".format(tile=wildcards.tile, date=partner.date)


def pair_flags(wildcards, input):
    """--partner and its window, or why the scene has none (its fields job then fails)."""
    partner = partner_of(wildcards)
    if partner:
        return f"--partner {input.partner} --partner-window {partner.window}"
    why = unpaired_reason(wildcards.tile, wildcards.date, FD["pairing"])
    return f"--unpaired {shlex.quote(why)}"


def scenes():
    """(tile, date) pairs of the campaign, as chosen by the search step."""
    df = manifest()
    return list(zip(df["tile"], df["date"]))


@functools.lru_cache(maxsize=4)
def _items(path, mtime):
    df = _read_manifest(path, mtime)
    return dict(zip(zip(df["tile"], df["date"]), df["item_id"]))


def item_of(wildcards):
    """The STAC item chosen for a tile-date (a param: a new item reruns that scene only).

    Before the search checkpoint is resolved (the first pass of a run aimed at one scene's
    files), the item is read from the manifest on disk, if there is one. A param that raises
    there reads '<TBD>' to Snakemake, a changed param: download would be planned, and through
    it superres and fields of a finished scene, which stay planned once the checkpoint is
    resolved and download is dropped (snakemake#3879). The job is evaluated again then.
    """
    try:
        path = checkpoints.search_scenes.get().output.manifest
    except IncompleteCheckpointException:
        if not Path(MANIFEST).exists():
            raise
        path = MANIFEST
    items = _items(path, Path(path).stat().st_mtime)
    return items.get((wildcards.tile, wildcards.date), "")


def scene_outputs(names):
    return [
        f"{SCENE}/{name}".format(tile=t, date=d) for t, d in scenes() for name in names
    ]


CAMPAIGN = "results/campaign"
COLLECTION = f"{CAMPAIGN}/collection.json"
FIELDS_DATASET = f"{CAMPAIGN}/fields"


def fields_partitions(wildcards):
    """The campaign fields dataset: one hive partition per tile-date."""
    return [f"{FIELDS_DATASET}/tile={t}/date={d}/part.parquet" for t, d in scenes()]


def catalog_outputs(wildcards):
    """The STAC collection (which needs every item) and the fields partitions, when enabled."""
    if not (config["catalog"]["enabled"] and config["fields"]["geoparquet"]):
        return []
    return [COLLECTION, *fields_partitions(wildcards)]


def season_dates(wildcards):
    """The manifest's dates of a tile inside a season's window, in order."""
    lo, hi = SEASONS[wildcards.season]
    return sorted(d for t, d in scenes() if t == wildcards.tile and lo <= d <= hi)


def season_files(name):
    """Input function: the file `name` of every date of the tile-season."""

    def files(wildcards):
        return [
            f"{SCENE}/{name}".format(tile=wildcards.tile, date=d)
            for d in season_dates(wildcards)
        ]

    return files


def season_embeddings(wildcards):
    """The embeddings of the year a season ends in (embeddings are annual)."""
    return f"results/{wildcards.tile}/{SEASONS[wildcards.season][1][:4]}/embeddings.tif"


def seasons_held():
    """(tile, season) of every tile-season holding at least one scene."""
    return {
        (t, name)
        for t, d in scenes()
        for name, (lo, hi) in SEASONS.items()
        if lo <= d <= hi
    }


def season_tiles(wildcards):
    """The tiles with at least one scene in the season, in order."""
    return sorted(t for t, s in seasons_held() if s == wildcards.season)


def season_layers(wildcards):
    """Input function: the classified season layer of each of the season's tiles."""
    return [
        f"results/{t}/season/{wildcards.season}/fields_classified.gpkg"
        for t in season_tiles(wildcards)
    ]


def season_outputs():
    """The season field layer of every tile-season holding at least one scene, and each
    season's campaign layer."""
    if not config["season"]["enabled"]:
        return []
    held = seasons_held()
    return [
        *(
            f"results/{t}/season/{s}/{name}"
            for t, s in sorted(held)
            for name in (
                "fields.gpkg",
                "fields_classified.gpkg",
                "classification_qc.json",
            )
        ),
        *(
            f"results/campaign/season/{s}/fields.gpkg"
            for s in sorted({s for _, s in held})
        ),
    ]


def final_outputs(wildcards):
    """Everything a campaign run delivers."""
    return [
        *scene_outputs(
            [
                "qc.json",
                "fields_classified.gpkg",
                "quicklook_rgb.png",
                "quicklook_dr.png",
                "quicklook_fields.png",
            ]
        ),
        *season_outputs(),
        "results/qc_summary.html",
        "results/models/classifier.cbm",
        *(
            f"results/{tile}/{config['classify']['year']}/crop_classes.tif"
            for tile in TILES
            if config["classify"]["class_raster"]
        ),
    ]


# -- GPU workers (config `workers`): superres and fields handed to warm GPU workers -----------
WORKERS = config["workers"]
POOL = WORKERS["count"] > 0
SPOOL = Path(WORKERS["spool"]).resolve()
if POOL:
    # the GPU steps' `tilepipe` hands its step to the pool's workers (tilepipe.worker): set
    # here, not as a param, so that turning the pool on or off reruns nothing
    os.environ.update(
        TILEPIPE_WORKER=f"spool:{SPOOL}", TILEPIPE_WORKER_WAIT=str(WORKERS["wait_s"])
    )

    # a scene's GPU step is then a thin client on this host: no GPU job of its own
    localrules:
        superres,
        fields,


def start_worker_pool():
    """Onstart, with a pool: the thread that starts GPU workers when scenes ask for them."""
    from tilepipe.worker.starter import Starter

    image = CONTAINERS["gpu"]
    in_image = WORKERS["container"].replace("{image}", image) if image else ""
    template = WORKERS["start"].replace("{container}", in_image)
    starter = Starter(
        SPOOL,
        WORKERS["count"],
        WORKERS["idle_s"],
        template,
        WORKERS["wait_s"],
        say=logger.info,
    )
    starter.start()
    return starter
