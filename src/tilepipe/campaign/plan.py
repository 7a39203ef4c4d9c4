"""What a campaign will cost before anything is submitted: jobs, sbatch calls, GPU-hours, storage.

The job counts follow the workflow's DAG shape (docs/design.md: per tile-date, per tile-year,
per campaign; checked against `snakemake --dry-run` in the tests); resources come from a cluster
profile; runtimes from a per-rule model (seconds = base + per_mpx × megapixels of the 10 m
window), billing from each centre's published rules. Every figure is an estimate: `assumptions()`
says on what it rests.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from tilepipe.campaign.seasons import season_windows
from tilepipe.campaign.status import CAMPAIGN_SEASON_STEP, SCENE_STEPS, SEASON_STEPS
from tilepipe.core.settings import section_defaults

#: Rules per scope: how many jobs each makes.
SCENE_RULES = tuple(step for step, _ in SCENE_STEPS)  # the per-scene steps, in order
CAMPAIGN_RULES = ("search_scenes", "train_classifier", "qc_summary", "all")
#: The catalog's rules (`catalog.enabled` with `fields.geoparquet`): per scene, then campaign.
CATALOG_SCENE_RULES = ("stac_item", "fields_partition")
CATALOG_CAMPAIGN_RULES = ("stac_collection",)
#: Rules that never go to Slurm, and those that go to the login node with `network_local`.
ALWAYS_LOCAL = frozenset(
    {"all", "demo_campaign", "qc_summary", *CATALOG_SCENE_RULES, *CATALOG_CAMPAIGN_RULES}
)
NETWORK_RULES = frozenset({"search_scenes", "download", "embeddings"})

#: Runtime model, seconds = base_s + per_mpx_s × Mpx of the scene's 10 m window (the rule's
#: input). GPU rules: tilepipe's engine on one H100 (superres ~19 Mpx/s and fields ~12 Mpx/s
#: of 1 m output, benchmarks/bench_chain.py via the device tool); CPU rules: 2 cores here.
DEFAULT_RUNTIME: dict[str, dict[str, float]] = {
    "search_scenes": {"base_s": 30, "per_mpx_s": 0.0},
    "download": {"base_s": 20, "per_mpx_s": 1.5},
    # base_s of a GPU job: billed minus engine seconds of the demo campaign's jobs on the CI's
    # Slurm through the plugin (`python benchmarks/bench_gpu_jobs.py WORKDIR` after
    # `pytest tests/workflow/test_slurm.py -k saga_runs`, commit 1545c61, docs/benchmarks.md):
    # Slurm's start and end and the plugin's Snakemake in the job (10-12 s), interpreter,
    # imports, model load and the step's checks (2-4 s). Not in it: a container's start and the
    # GPU's initialisation, unmeasured here (no GPU, no Apptainer): add them in plan.runtime
    "superres": {"base_s": 13, "per_mpx_s": 5.3},
    "fields": {"base_s": 17, "per_mpx_s": 8.5},
    "qc": {"base_s": 10, "per_mpx_s": 5.0},
    "quicklook": {"base_s": 5, "per_mpx_s": 2.0},
    "embeddings": {"base_s": 30, "per_mpx_s": 2.0},
    "classify": {"base_s": 10, "per_mpx_s": 1.0},
    "qc_classification": {"base_s": 5, "per_mpx_s": 0.0},
    "class_raster": {"base_s": 30, "per_mpx_s": 2.0},
    "train_classifier": {"base_s": 300, "per_mpx_s": 0.0},
    "qc_summary": {"base_s": 5, "per_mpx_s": 0.0},
    "season_fields": {"base_s": 20, "per_mpx_s": 0.0},
    "season_classify": {"base_s": 10, "per_mpx_s": 0.0},
    "season_qc_classification": {"base_s": 5, "per_mpx_s": 0.0},
    "campaign_fields": {"base_s": 10, "per_mpx_s": 0.0},
    "demo_campaign": {"base_s": 20, "per_mpx_s": 0.0},
    "stac_item": {"base_s": 3, "per_mpx_s": 0.0},
    "fields_partition": {"base_s": 3, "per_mpx_s": 0.0},
    "stac_collection": {"base_s": 5, "per_mpx_s": 0.0},
    "all": {"base_s": 0, "per_mpx_s": 0.0},
}

#: A pool of GPU workers (config ``workers``): what a worker pays once (its job's start,
#: interpreter, imports; its idle tail is ``workers.idle_s``) and what each scene pays beyond
#: the engine (handing its command line over, parsing it, the step's checks, writing);
#: measured on the CI's Slurm with the worker alone on its cores, as on a cluster where the
#: clients run on the login node: ``benchmarks/bench_campaign.py --executor slurm --clients 1``
#: (docs/benchmarks.md, 0.034 to 0.041 s per scene at 100² to 500²).
POOL_COSTS = {"start_s": 4.0, "per_scene_s": 0.04}
#: Workers the plan compares with when the config has none (workers.count 0).
PLAN_WORKERS = 4
GPU_RULES = ("superres", "fields")

#: Bytes written per Mpx of 10 m window, uncompressed upper bounds (DEFLATE usually halves
#: rasters): s2 4 × uint16 (+ SCL 1 byte); DR 100 × the pixels × 4 × uint16 at the demo's x10
#: (scale² × the pixels for another scale, :func:`dr_factor`); TESSERA embeddings 128 × float32
#: per tile-year; vectors and PNGs a rough allowance.
STORAGE_PER_MPX = {
    "download": 9e6,
    "superres": 800e6,
    "fields": 2e6,
    "qc": 0.0,
    "quicklook": 0.0,
    "classify": 2e6,
    "embeddings": 512e6,
    "class_raster": 1e6,
    "fields_partition": 2e6,  # a copy of the scene's fields.parquet
}
STORAGE_FIXED = {"quicklook": 3e6, "qc": 2e4, "stac_item": 2e4}
#: s2.tif's bytes per Mpx of each further band download adds (uint16 on the 10 m grid).
STORAGE_PER_BAND_MPX = 2e6
#: The DR scale the defaults above are for (the demo model's x10: 1 m output).
DEFAULT_DR_SCALE = 10
#: Rules whose runtime and output grow with the DR output's pixels (fields when it reads dr).
DR_RULES = ("superres",)


def configured_dr_scale(config: Mapping, base: str | Path = ".") -> int:
    """The DR scale of the campaign: the configured model's sidecar ``scale`` (bicubic: x10).

    A sidecar that is missing or wrong is a ConfigError/SidecarError here, as at parse time.
    """
    import json

    from tilepipe.core.errors import ConfigError
    from tilepipe.models.sidecar import parse_sidecar

    sr = config.get("superres", {}) or {}
    if sr.get("method", "model") != "model":
        return DEFAULT_DR_SCALE
    path = (Path(base) / str(sr.get("model", "models/dr_demo.pt"))).with_suffix(".json")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"config key 'superres.model': cannot read sidecar {path} ({exc})"
        ) from exc
    return parse_sidecar(meta, f"file {path}: ").scale


def dr_factor(rule: str, dr_scale: int, fields_on_dr: bool) -> float:
    """How much a rule's per-Mpx runtime and storage grow with the DR scale against x10: the
    DR output's pixels, (scale / 10)², for superres and for fields on dr.tif."""
    if rule in DR_RULES or (rule == "fields" and fields_on_dr):
        return (dr_scale / DEFAULT_DR_SCALE) ** 2
    return 1.0


#: Billing: units per hour of a job, by cluster; the centres' rules and their public sources are
#: in docs/clusters.md ("What each centre requires"). Eagle publishes none.
BILLING_NOTES = {
    "lumi": "LUMI small-g: 0.5 GPU-h per GCD-hour × max(GCDs, cores/8, mem/64 GB); "
    "small (CPU): core-hours × max(cores, mem/2 GB) (assumed 2 GB per core)",
    "saga": "NRIS Saga: units/h = max(CPUs, mem/4 GB (assumed), 8 per A100 GPU)",
    "betzy": "NRIS Betzy: accel 16 units per GPU-hour; preproc units/h = max(CPUs, mem/2 GB) "
    "(assumed); normal (never used) 128 units per node-hour",
    "poznan": "Eagle: no published billing; GPU-hours only",
    "local": "local run: nothing billed",
}


@dataclass
class RulePlan:
    """One rule's share of the campaign."""

    rule: str
    jobs: int
    where: str  # slurm | local
    partition: str
    gpus: int
    cpus: int
    mem_mb: int
    runtime_limit_min: int
    arrayed: bool
    submissions: int
    hours: float  # expected wall-clock hours of all its jobs together
    gpu_hours: float
    billing: float | None
    storage_bytes: float


_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}


def profile_value(value: object, attempt: int = 1) -> object:
    """A profile resource as Snakemake reads it: a Python literal or arithmetic on `attempt`."""
    if not isinstance(value, str):
        return value

    def ev(node: ast.AST) -> object:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id == "attempt":
            return attempt
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"unsupported expression in profile: {value!r}")

    try:
        return ev(ast.parse(value, mode="eval"))
    except (SyntaxError, ValueError):
        return value  # a bare word, e.g. an unquoted partition name


def load_profile(path: str | Path | None) -> dict:
    """A profile's config.yaml (a directory or the file), or the local defaults."""
    if path is None:
        return {"executor": "local", "config": {"cluster": {"name": "local"}}}
    path = Path(path)
    path = path / "config.yaml" if path.is_dir() else path
    return yaml.safe_load(path.read_text()) or {}


def _resource(profile: Mapping, rule: str, key: str, default: object = None) -> object:
    value = profile.get("set-resources", {}).get(rule, {}).get(key)
    if value is None:
        value = profile.get("default-resources", {}).get(key, default)
    return profile_value(value)


def rule_gpus(profile: Mapping, rule: str) -> int:
    """GPUs a profile gives a rule (`gpu: N` or `gres: gpu[:type]:N`)."""
    gres = _resource(profile, rule, "gres")
    if isinstance(gres, str) and gres.startswith("gpu"):
        return int(gres.rsplit(":", 1)[1])
    return int(_resource(profile, rule, "gpu", 0) or 0)


def billing_units(
    cluster: str, partition: str, gpus: int, cpus: int, mem_mb: float, hours: float
) -> float | None:
    """Billing units of `hours` of one job's allocation, per the centre's rule."""
    mem_gb = mem_mb / 1024
    if cluster == "lumi":
        if gpus:
            return 0.5 * hours * max(gpus, cpus / 8, mem_gb / 64)
        return hours * max(cpus, mem_gb / 2)
    if cluster == "saga":
        return hours * max(cpus, mem_gb / 4, 8 * gpus)
    if cluster == "betzy":
        if gpus:
            return hours * 16 * gpus
        if partition == "normal":
            return hours * 128
        return hours * max(cpus, mem_gb / 2)
    return None


def count_jobs(
    scenes: list[tuple[str, str]],
    tiles: list[str],
    year: int,
    demo: bool,
    class_raster: bool = False,
    catalog: bool = True,
    seasons: dict[str, tuple[str, str]] | None = None,
) -> dict[str, int]:
    """Jobs per rule for a campaign of `scenes` (tile, date), as the workflow's DAG has them;
    `seasons` (name -> first, last day) adds one job of each season rule per tile-season held."""
    tile_years = {(t, str(year)) for t in tiles} | {(t, d[:4]) for t, d in scenes}
    counts = {rule: len(scenes) for rule in SCENE_RULES}
    counts |= {rule: 1 for rule in CAMPAIGN_RULES}
    counts["embeddings"] = len(tile_years)
    if class_raster:
        counts["class_raster"] = len(set(tiles))
    if seasons:
        held = {(t, n) for t, d in scenes for n, (lo, hi) in seasons.items() if lo <= d <= hi}
        for rule, _ in SEASON_STEPS:
            counts[rule] = len(held)
        counts[CAMPAIGN_SEASON_STEP[0]] = len({n for _, n in held})
    if demo:
        counts["demo_campaign"] = 1
    if catalog:
        counts |= {rule: len(scenes) for rule in CATALOG_SCENE_RULES}
        counts |= {rule: 1 for rule in CATALOG_CAMPAIGN_RULES}
    return counts


def _seasons(config: Mapping) -> dict[str, tuple[str, str]] | None:
    """The campaign's season windows when season layers are on (schema defaults filled)."""
    season = {**section_defaults("season"), **config.get("season", {})}
    if not season["enabled"]:
        return None
    dates = config.get("dates", {})
    return season_windows(season["windows"], dates.get("start", ""), dates.get("end", ""))


def window_mpx(window: Mapping | str | None) -> float:
    """Megapixels of a scene's 10 m window (a full tile: 10,980²)."""
    if not isinstance(window, Mapping):
        return 10980 * 10980 / 1e6
    return window["width"] * window["height"] / 1e6


def scenes_mpx(config: Mapping, scenes: list[tuple[str, str]]) -> float:
    """Mean megapixels of the scenes' windows: a tile's own (``windows``), else ``window``."""
    own = config.get("windows") or {}
    if not scenes or not own or config.get("aoi"):
        return window_mpx(config.get("window"))
    sizes = [window_mpx(own.get(tile, config.get("window"))) for tile, _ in scenes]
    return sum(sizes) / len(sizes)


def plan(
    config: Mapping,
    profile: Mapping,
    scenes: list[tuple[str, str]],
    runtime: Mapping[str, Mapping[str, float]] | None = None,
    dr_scale: int = DEFAULT_DR_SCALE,
    more_bands: int = 0,
) -> list[RulePlan]:
    """The campaign's plan, rule by rule; ``dr_scale`` (the DR model's) sizes superres and
    fields on dr.tif by the DR output's pixels, ``more_bands`` (the further L2A bands the
    models take) download's s2.tif."""
    runtime = {**DEFAULT_RUNTIME, **(runtime or {})}
    cluster = profile.get("config", {}).get("cluster", config.get("cluster", {}))
    name = cluster.get("name", "local")
    network_local = cluster.get("network_local", False)
    on_slurm = profile.get("executor") == "slurm"
    arrayed_rules = set(str(profile.get("slurm-array-jobs", "") or "").split(",")) - {""}
    array_limit = int(profile.get("slurm-array-limit", 1000))
    queue_cap = int(profile.get("jobs", 1))
    mpx = scenes_mpx(config, scenes)  # per job, on average: the hours are summed over jobs
    fields_on_dr = (config.get("fields", {}) or {}).get("input", "dr") == "dr"
    counts = count_jobs(
        scenes,
        list(config.get("tiles", [])),
        int(config.get("classify", {}).get("year", 0)),
        bool(config.get("demo", {}).get("generate", False)),
        bool(config.get("classify", {}).get("class_raster", False)),
        bool(config.get("catalog", {}).get("enabled", True))
        and bool(config.get("fields", {}).get("geoparquet", True)),
        _seasons(config),
    )
    workers = int((config.get("workers", {}) or {}).get("count", 0) or 0)
    if workers:  # the GPU steps are thin local clients; the workers are the GPU jobs
        counts = {**counts, "gpu_worker": workers}
    plans = []
    for rule, jobs in counts.items():
        local = not on_slurm or rule in ALWAYS_LOCAL or (network_local and rule in NETWORK_RULES)
        local = local or (workers > 0 and rule in GPU_RULES)
        model = runtime.get(rule, {"base_s": 60, "per_mpx_s": 0})
        per_job_mpx = mpx if rule in (*SCENE_RULES, "embeddings", "class_raster") else 0.0
        per_job_mpx *= dr_factor(rule, dr_scale, fields_on_dr)
        hours = jobs * (model["base_s"] + model["per_mpx_s"] * per_job_mpx) / 3600
        if workers and rule in GPU_RULES:  # a client: hands its step over, waits for it
            engine_s = model["per_mpx_s"] * per_job_mpx
            hours = jobs * (POOL_COSTS["per_scene_s"] + engine_s) / 3600
        if rule == "gpu_worker":  # the scenes' GPU steps, once per worker its start and idle
            lay = gpu_layouts(config, profile, len(scenes), runtime, dr_scale)[1]
            hours = lay.gpu_hours / max(lay.gpus_per_job, 1)
        gpus = 0 if local else rule_gpus(profile, "superres" if rule == "gpu_worker" else rule)
        like = "superres" if rule == "gpu_worker" else rule  # a worker asks what superres does
        cpus = int(_resource(profile, like, "cpus_per_task", 1) or 1)
        mem = float(_resource(profile, like, "mem_mb", 0) or 0)
        partition = "" if local else str(_resource(profile, like, "slurm_partition", ""))
        arrayed = not local and ("all" in arrayed_rules or rule in arrayed_rules) and jobs > 1
        if local:
            submissions = 0
        elif arrayed:
            submissions = math.ceil(jobs / max(1, min(array_limit, queue_cap)))
        else:
            submissions = jobs
        storage = STORAGE_FIXED.get(rule, 0.0) * jobs
        storage += STORAGE_PER_MPX.get(rule, 0.0) * per_job_mpx * jobs
        if rule == "download":
            storage += STORAGE_PER_BAND_MPX * more_bands * per_job_mpx * jobs
        plans.append(
            RulePlan(
                rule=rule,
                jobs=jobs,
                where="local" if local else "slurm",
                partition=partition,
                gpus=gpus,
                cpus=cpus,
                mem_mb=int(mem),
                runtime_limit_min=int(_resource(profile, like, "runtime", 0) or 0),
                arrayed=arrayed,
                submissions=submissions,
                hours=hours,
                gpu_hours=hours * gpus,
                billing=None if local else billing_units(name, partition, gpus, cpus, mem, hours),
                storage_bytes=storage,
            )
        )
    return plans


@dataclass
class GpuLayout:
    """The GPU steps' billed time in one layout: a GPU job per scene, or a pool of workers."""

    layout: str
    gpu_jobs: int
    fixed_s: float  # paid once per GPU job (a job per scene) or per worker (the pool)
    engine_s: float  # the engine's seconds, all scenes and GPU steps together
    overhead_s: float  # per-scene seconds beyond the engine (the pool's hand-off)
    gpu_hours: float
    billing: float | None
    gpus_per_job: int = 1

    @property
    def engine_share(self) -> float:
        """The share of the billed GPU time that is the engine's."""
        billed = self.gpu_hours * 3600 / max(self.gpus_per_job, 1)
        return self.engine_s / billed if billed else 0.0


def gpu_layouts(
    config: Mapping,
    profile: Mapping,
    scenes: int,
    runtime: Mapping[str, Mapping[str, float]] | None = None,
    dr_scale: int = DEFAULT_DR_SCALE,
) -> list[GpuLayout]:
    """superres and fields billed as a GPU job per scene, and as a pool of workers
    (``workers.count``, or PLAN_WORKERS when the config has none)."""
    runtime = {**DEFAULT_RUNTIME, **(runtime or {})}
    mpx = window_mpx(config.get("window"))
    fields_on_dr = (config.get("fields", {}) or {}).get("input", "dr") == "dr"
    cluster = profile.get("config", {}).get("cluster", config.get("cluster", {}))
    name = cluster.get("name", "local")
    gpus = max(rule_gpus(profile, "superres"), 1)
    cpus = int(_resource(profile, "superres", "cpus_per_task", 1) or 1)
    mem = float(_resource(profile, "superres", "mem_mb", 0) or 0)
    partition = str(_resource(profile, "superres", "slurm_partition", ""))
    engine = sum(
        scenes * runtime[r]["per_mpx_s"] * mpx * dr_factor(r, dr_scale, fields_on_dr)
        for r in GPU_RULES
    )
    fixed = sum(runtime[r]["base_s"] for r in GPU_RULES) / len(GPU_RULES)
    jobs = scenes * len(GPU_RULES)
    workers_cfg = config.get("workers", {}) or {}
    workers = int(workers_cfg.get("count", 0) or 0) or PLAN_WORKERS
    idle = float(workers_cfg.get("idle_s", 60))
    pool_fixed = POOL_COSTS["start_s"] + idle
    overhead = jobs * POOL_COSTS["per_scene_s"]

    def billed(hours: float) -> float | None:
        return (
            None
            if profile.get("executor") != "slurm"
            else billing_units(name, partition, gpus, cpus, mem, hours)
        )

    old_h = (jobs * fixed + engine) / 3600
    pool_h = (workers * pool_fixed + engine + overhead) / 3600
    return [
        GpuLayout(
            "a GPU job per scene", jobs, fixed, engine, 0.0, old_h * gpus, billed(old_h), gpus
        ),
        GpuLayout(
            f"pool of {workers} workers", workers, pool_fixed, engine, overhead, pool_h * gpus,
            billed(pool_h), gpus,
        ),
    ]  # fmt: skip


def format_layouts(layouts: list[GpuLayout], current: int) -> str:
    """The GPU layouts side by side: fixed and engine time, GPU-hours, units, engine share."""
    head = (
        f"{'GPU steps (superres, fields)':<28}{'GPU jobs':>9}{'fixed s/job':>12}"
        f"{'engine h':>9}{'other h':>8}{'GPU-h':>9}{'units':>9}{'engine share':>13}"
    )
    lines = [head]
    for lay in layouts:
        units = "-" if lay.billing is None else f"{lay.billing:.1f}"
        fixed_h = lay.gpu_jobs * lay.fixed_s / 3600
        lines.append(
            f"{lay.layout:<28}{lay.gpu_jobs:>9}{lay.fixed_s:>12.1f}{lay.engine_s / 3600:>9.2f}"
            f"{fixed_h + lay.overhead_s / 3600:>8.2f}{lay.gpu_hours:>9.2f}{units:>9}"
            f"{lay.engine_share:>13.0%}"
        )
    lines.append(
        "  (this config: "
        + ("a GPU job per scene" if not current else f"a pool of {current}")
        + "; a pool: config workers.count, docs/engine.md#gpu-workers)"
    )
    return "\n".join(lines)


def pairing_note(config: Mapping) -> list[str]:
    """How a two-date fields model's scenes are paired (``fields.pairing``), if it is set."""
    pairing = (config.get("fields") or {}).get("pairing") or {}
    windows, pairs = pairing.get("windows"), pairing.get("pairs") or []
    if windows:
        spans = ", ".join(f"{w} {windows[w]['start']}..{windows[w]['end']}" for w in ("a", "b"))
        how = f"windows {spans}: each scene with the clearest of its tile and year in the other"
    elif pairs:
        how = f"{len(pairs)} explicit pairs; a scene in none fails its fields job"
    else:
        return []
    return [f"fields: a two-date model, each fields job also reads its partner's image ({how})"]


def assumptions(
    profile: Mapping,
    config: Mapping,
    scenes_from: str,
    dr_scale: int = DEFAULT_DR_SCALE,
    more_bands: tuple[str, ...] = (),
) -> list[str]:
    """What the figures of a plan rest on, in words."""
    cluster = profile.get("config", {}).get("cluster", {}).get("name", "local")
    pixel = 10 / dr_scale
    bands = " ".join(("B02 B03 B04 B08", *more_bands))
    return [
        f"scenes: {scenes_from}",
        f"s2.tif bands: {bands} (the further ones are those the models take, and source.bands)",
        *pairing_note(config),
        f"DR scale x{dr_scale} ({pixel:g} m dr.tif pixels, from the superres model's sidecar): "
        "superres and fields on dr.tif sized by the DR output's pixels, (scale/10)² of the x10 "
        "defaults",
        "runtimes: base + per-Mpx model per rule (config `plan.runtime`, defaults measured: GPU "
        "rules on one H100, CPU rules on 2 cores); real runtimes vary with I/O and load",
        "sbatch calls: a rule in `slurm-array-jobs` submits arrays of up to "
        "min(slurm-array-limit, jobs) tasks when that many are ready together (the best case; "
        "jobs that become ready one by one are submitted one by one); other rules one per job",
        "retries are not counted (each retry is one more job with a longer time limit)",
        "storage: uncompressed upper bounds; DEFLATE typically halves rasters",
        f"billing: {BILLING_NOTES.get(cluster, 'unknown cluster: not estimated')}",
    ]


def format_plan(plans: list[RulePlan], notes: list[str]) -> str:
    """The plan as a table with totals and assumptions, for a terminal."""
    head = (
        f"{'rule':<17}{'jobs':>7} {'where':<6}{'partition':<10}{'gpu':>4}{'cpu':>4}"
        f"{'mem GB':>7}{'limit':>7}{'sbatch':>8}{'hours':>9}{'GPU-h':>8}{'units':>9}{'GB':>9}"
    )
    lines = [head, "-" * len(head)]
    for p in plans:
        units = "-" if p.billing is None else f"{p.billing:.1f}"
        limit = f"{p.runtime_limit_min}m" if p.where == "slurm" else "-"
        lines.append(
            f"{p.rule:<17}{p.jobs:>7} {p.where:<6}{p.partition or '-':<10}{p.gpus:>4}"
            f"{p.cpus:>4}{p.mem_mb / 1024:>7.1f}{limit:>7}{p.submissions:>8}"
            f"{p.hours:>9.2f}{p.gpu_hours:>8.2f}{units:>9}{p.storage_bytes / 1e9:>9.2f}"
        )
    billed = [p.billing for p in plans if p.billing is not None]
    lines.append("-" * len(head))
    totals = [
        f"{sum(p.jobs for p in plans)} jobs",
        f"{sum(p.submissions for p in plans)} sbatch calls",
        f"{sum(p.hours for p in plans):.2f} job-hours",
        f"{sum(p.gpu_hours for p in plans):.2f} GPU-hours",
    ]
    if billed:
        totals.append(f"{sum(billed):.1f} billing units")
    totals.append(f"storage {sum(p.storage_bytes for p in plans) / 1e9:.2f} GB")
    lines.append("total: " + ", ".join(totals))
    lines.append("assumptions:")
    lines += [f"  - {n}" for n in notes]
    return "\n".join(lines)


def merge(base: Mapping, overlay: Mapping) -> dict:
    """`overlay` deep-merged over `base` (a profile's `config:` over the config file)."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def hypothetical_scenes(tiles: int, dates_per_tile: int, year: int) -> list[tuple[str, str]]:
    """Placeholder tile-dates for sizing a campaign that has not been searched yet."""
    return [
        (f"T{t:05d}", f"{year}-{1 + d % 12:02d}-{1 + d // 12:02d}")
        for t in range(tiles)
        for d in range(dates_per_tile)
    ]
