"""Container images and the cluster profiles' Apptainer command lines.

Apptainer is not installed here (nor installable): no image is built or run by these tests. They
check two things a user would otherwise find out on a cluster, hours into a queue:

- the definition files (containers/*.def) and their pins: each image installs tilepipe from the
  repository with exact pins that are the ones the tests run with, sets one PROJ database
  (containers/README.md) and WANDB_MODE, tests itself after the build, and the LUMI image never
  asks for `--rocm` (docs/clusters.md). The PROJ-database choice the images make at build time
  is run here on this machine's own wheels.
- the command lines each cluster profile makes Snakemake run. The demo campaign runs with each
  profile as far as one scene's dr.tif (demo_campaign, search_scenes, download, superres) with
  `--executor local` instead of Slurm (the Slurm path is tested elsewhere) and with the stand-in
  tests/apptainer_standin/apptainer first on PATH: it records every `apptainer exec` (argv and
  the environment the container would get) and runs the command on the host. What is asserted
  is the command line: `--nv`/`--rocm`, the `--env` list, the image per rule, the environment
  (SINGULARITY_BIND, TMPDIR, image cache), never what a real container would do with them.

`python -m tests.workflow.test_containers` prints containers/requirements-cpu.txt as it should be
for the current environment (the venv of `make demo`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..conftest import REPO

CONTAINERS = REPO / "containers"
STANDIN = REPO / "tests" / "apptainer_standin"
REQUIREMENTS = CONTAINERS / "requirements-cpu.txt"
IMAGES = ("cpu", "cuda", "lumi-rocm")
TORCH_PIN = "2.13.0"
#: the line that starts the PyTorch block of the requirements (the LUMI image stops before it)
TORCH_MARKER = "# --- torch"
#: the directory the images' PROJ_DATA names (a copy of the newest proj.db of the wheels)
PROJ_DATA = "/opt/tilepipe/proj_data"
#: LUMI's binds (docs/clusters.md): the singularity-AI-bindings module's list
LUMI_BINDS = {
    "/var/spool/slurmd",
    "/opt/cray",
    "/usr/lib64/libcxi.so.1",
    "/usr/lib64/libjansson.so.4",
    "/pfs",
    "/scratch",
    "/projappl",
    "/project",
    "/flash",
    "/appl",
}
CLUSTERS = ("saga", "lumi", "betzy", "poznan")
NVIDIA = {"saga": True, "lumi": False, "betzy": True, "poznan": True}
GPU_STEPS = {"superres", "fields"}
#: the rules of one scene's chain up to dr.tif, by the tilepipe step each runs
CHAIN = {"demo", "search", "download", "superres"}
SCENE = ("33UXP", "2022-01-12")
#: the documented override: run the jobs here instead of submitting them to Slurm
LOCAL = ("--executor", "local", "--cores", "2")


# ---------------------------------------------------------------------------------------------
# definition files


def read_def(name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(header, sections) of containers/tilepipe-NAME.def; a repeated section is concatenated."""
    header: dict[str, str] = {}
    sections: dict[str, str] = {}
    current = None
    for line in (CONTAINERS / f"tilepipe-{name}.def").read_text().splitlines():
        m = re.match(r"^%(\w+)\b", line)
        if m:
            current = m.group(1)
            sections.setdefault(current, "")
        elif current is not None:
            sections[current] += line + "\n"
        elif not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            header[key.strip()] = value.strip()
    return header, sections


def code_lines(text: str) -> list[str]:
    """Lines that are not shell comments (what the build and the image actually do)."""
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def block(text: str, name: str) -> str:
    """The text between `# >>> NAME` and `# <<< NAME` (shared verbatim by the images)."""
    m = re.search(rf"# >>> {name}\b.*?\n(.*?)# <<< {name}\b", text, re.S)
    assert m, f"no `# >>> {name}` ... `# <<< {name}` block"
    return m.group(1)


def heredoc_python(text: str) -> str:
    """The Python program of the first `python - <<'PY'` here-document in `text`."""
    m = re.search(r"python - <<'PY'\n(.*?)\nPY\n", text, re.S)
    assert m, "no python here-document"
    return m.group(1)


def exported(name: str) -> dict[str, str]:
    """Variables the image exports at run time (%environment, or the env file %post writes)."""
    _, sections = read_def(name)
    text = sections.get("environment", "") + sections["post"]
    return dict(re.findall(r"^\s*export ([A-Z_]+)=(\S+)\s*$", text, re.M))


@pytest.mark.parametrize(
    ("image", "bootstrap", "base"),
    [
        ("cpu", "docker", r"python:3\.11\.\d+-slim-bookworm"),
        ("cuda", "docker", r"python:3\.11\.\d+-slim-bookworm"),
        ("lumi-rocm", "localimage", r"\{\{ LUMI_BASE_SIF \}\}"),
    ],
)
def test_each_image_starts_from_a_fixed_base(image, bootstrap, base):
    header, _ = read_def(image)
    assert header["Bootstrap"] == bootstrap
    assert re.fullmatch(base, header["From"]), header["From"]


def test_the_lumi_base_is_a_centre_image_named_at_build_time():
    text = (CONTAINERS / "tilepipe-lumi-rocm.def").read_text()
    _, sections = read_def("lumi-rocm")
    # no default: a wrong guess at a centre file name would fail late; the build must name it
    assert "LUMI_BASE_SIF" not in sections.get("arguments", "")
    assert "--build-arg LUMI_BASE_SIF=/appl/local/containers/sif-images/lumi-pytorch-rocm-" in text


@pytest.mark.parametrize("image", IMAGES)
def test_the_repository_is_copied_to_opt_tilepipe(image):
    _, sections = read_def(image)
    pairs = [line.split() for line in code_lines(sections["files"]) if line.strip()]
    copied = {src: dest for src, dest in pairs}
    for src in ("pyproject.toml", "README.md", "src", "models", "workflow", "Snakefile", "config"):
        assert copied.get(src) == f"/opt/tilepipe/{src}", (src, copied)
        assert (REPO / src).exists(), src  # %files paths are relative to the repository root
    assert copied["containers/requirements-cpu.txt"] == "/opt/tilepipe/requirements-cpu.txt"


@pytest.mark.parametrize("image", IMAGES)
def test_tilepipe_is_installed_from_opt_tilepipe_with_exact_pins_only(image):
    _, sections = read_def(image)
    installs = [
        " ".join(line.split())
        for line in code_lines(
            re.sub(r"\{\{ (\w+) \}\}", r"{{\1}}", sections["post"]).replace("\\\n", " ")
        )
        if "pip install" in line
    ]
    assert any(re.search(r"-r /opt/tilepipe/requirements-\w+\.txt$", i) for i in installs)
    assert any(
        i.endswith("pip install --no-deps --no-build-isolation /opt/tilepipe") for i in installs
    )
    for install in installs:
        words = install.split("pip install", 1)[1].split()
        for word, previous in zip(words, ["", *words][:-1], strict=True):
            is_option = word.startswith("-") or previous in ("-r", "--extra-index-url")
            assert is_option or word == "/opt/tilepipe" or "==" in word, (word, install)


@pytest.mark.parametrize("image", IMAGES)
def test_the_image_sets_proj_data_and_disables_wandb(image):
    env = exported(image)
    assert env.get("PROJ_DATA") == PROJ_DATA
    assert env.get("WANDB_MODE") == "disabled"


def test_the_lumi_image_keeps_the_centre_environment():
    _, sections = read_def("lumi-rocm")
    # a %environment section would replace the centre image's (WITH_CONDA, ROCm paths)
    assert "environment" not in sections
    assert "/.singularity.d/env/92-tilepipe.sh" in sections["post"]
    assert exported("lumi-rocm")["PATH"] == '"/opt/tilepipe/venv/bin:$PATH"'


def test_the_lumi_image_never_uses_rocm_and_sets_the_hip_allocator():
    text = (CONTAINERS / "tilepipe-lumi-rocm.def").read_text()
    assert not [line for line in code_lines(text) if "--rocm" in line]
    assert "never `singularity exec --rocm`" in text  # and says why, for the next reader
    assert "SINGULARITY_BIND" in text
    assert exported("lumi-rocm")["PYTORCH_HIP_ALLOC_CONF"] == "expandable_segments:True"


def test_the_lumi_image_never_installs_a_second_pytorch():
    _, sections = read_def("lumi-rocm")
    post = sections["post"]
    assert f"sed '/^{TORCH_MARKER}/,$d' /opt/tilepipe/requirements-cpu.txt" in post
    assert "-r /opt/tilepipe/requirements-lumi.txt" in post
    assert "torch==" not in "\n".join(code_lines(post)).replace("'^torch=='", "")
    # what the sed leaves: every pin but the PyTorch block
    kept = REQUIREMENTS.read_text().split(TORCH_MARKER)[0]
    assert "torch==" not in kept and "numpy==" in kept


def test_the_cuda_image_swaps_in_a_pinned_cuda_torch():
    _, sections = read_def("cuda")
    assert re.fullmatch(r"\s*TORCH_CUDA=cu12\d\s*", sections["arguments"])
    post = " ".join(sections["post"].replace("\\\n", " ").split())
    assert r"s/^(torch==[0-9.]+)\+cpu$/\1+{{ TORCH_CUDA }}/" in post
    assert "--extra-index-url https://download.pytorch.org/whl/{{ TORCH_CUDA }}" in post
    assert "-r /opt/tilepipe/requirements-cuda.txt" in post


@pytest.mark.parametrize("image", IMAGES)
def test_every_build_argument_is_declared_or_demanded(image):
    text = (CONTAINERS / f"tilepipe-{image}.def").read_text()
    _, sections = read_def(image)
    declared = set(re.findall(r"^\s*(\w+)=", sections.get("arguments", ""), re.M))
    for arg in set(re.findall(r"\{\{ (\w+) \}\}", text)) - declared:
        assert f"--build-arg {arg}=" in text, arg


def test_the_proj_and_check_blocks_are_the_same_in_every_image():
    texts = {i: (CONTAINERS / f"tilepipe-{i}.def").read_text() for i in IMAGES}
    for name in ("proj_data", "check"):
        blocks = {i: block(t, name) for i, t in texts.items()}
        assert len(set(blocks.values())) == 1, f"the {name} blocks differ"
    tests = {i: read_def(i)[1]["test"] for i in IMAGES}
    assert len(set(tests.values())) == 1, "the %test sections differ"


def test_every_image_tests_itself_after_the_build():
    test = read_def("cpu")[1]["test"]
    assert "tilepipe --version" in test
    check = block(test, "check")
    assert 'Transformer.from_crs("EPSG:4326", "EPSG:32633"' in check
    assert "transform(CRS.from_epsg(4326), CRS.from_epsg(32633)" in check
    for step in ("demo", "search", "download", "superres"):
        assert f"tilepipe {step} " in test, step
    assert "/opt/tilepipe/models/dr_demo.pt" in test


def _proj_dirs() -> dict[str, Path]:
    import pyogrio
    import pyproj
    import rasterio

    return {
        "rasterio": Path(rasterio.__file__).parent / "proj_data",
        "pyogrio": Path(pyogrio.__file__).parent / "proj_data",
        "pyproj": Path(pyproj.__file__).parent / "proj_dir" / "share" / "proj",
    }


def _run_check(proj_data: Path) -> subprocess.CompletedProcess:
    """The images' %test check on this machine, pyproj pointed at `proj_data` as in the image."""
    check = heredoc_python(block(read_def("cpu")[1]["test"], "check"))
    setup = "import os, pyproj.datadir as d; d.set_data_dir(os.environ['PROJ_DATA'])\n"
    env = {**os.environ, "PROJ_DATA": str(proj_data), "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-c", setup + check], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_build_picks_the_proj_database_every_library_accepts(tmp_path):
    """The %post block on copies of this machine's wheel databases, then the images' check."""
    program = heredoc_python(block(read_def("cpu")[1]["post"], "proj_data"))
    copies = {name: tmp_path / name for name in ("rasterio", "pyogrio", "pyproj")}
    for name, src in _proj_dirs().items():
        shutil.copytree(src, copies[name])
    target = tmp_path / "proj_data"
    pyproj_dir = 'Path(pyproj.__file__).parent / "proj_dir" / "share" / "proj"'
    replacements = {
        f'Path("{PROJ_DATA}")': f'Path("{target}")',
        pyproj_dir: f'Path("{copies["pyproj"]}")',
        'Path(rasterio.__file__).parent / "proj_data"': f'Path("{copies["rasterio"]}")',
        'Path(pyogrio.__file__).parent / "proj_data"': f'Path("{copies["pyogrio"]}")',
    }
    for old, new in replacements.items():
        # never run the block on this environment's own directories
        assert program.count(old) == 1, old
        program = program.replace(old, new)
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert copies["pyproj"].is_symlink() and copies["pyproj"].resolve() == target.resolve()
    check = _run_check(target)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "agreed by rasterio" in check.stdout


def test_the_image_check_catches_an_older_proj_database():
    """rasterio handed pyproj's older proj.db fails (seen on Betzy); the images' %test says so."""

    def minor(d: Path) -> int:
        db = sqlite3.connect(f"file:{d / 'proj.db'}?mode=ro", uri=True)
        value = db.execute(
            "SELECT value FROM metadata WHERE key = 'DATABASE.LAYOUT.VERSION.MINOR'"
        ).fetchone()
        db.close()
        return int(value[0])

    dirs = _proj_dirs()
    oldest = min(dirs.values(), key=minor)
    if minor(oldest) == max(minor(d) for d in dirs.values()):
        pytest.skip("the wheels here ship databases of one layout: no mismatch to provoke")
    check = _run_check(oldest)
    assert check.returncode != 0
    assert "DATABASE.LAYOUT.VERSION.MINOR" in check.stderr


# ---------------------------------------------------------------------------------------------
# requirements


def _requires(dist: str) -> list[str]:
    names = []
    for text in metadata.requires(dist) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(canonicalize_name(req.name))
    return names


def _closure(roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_requires(name))
    return seen


def runtime_pins() -> tuple[dict[str, str], dict[str, str]]:
    """(tilepipe's pins, the PyTorch block's pins) of this environment, runtime closure only."""
    roots = _requires("tilepipe")
    without_torch = _closure([r for r in roots if r != "torch"]) | {"setuptools"}
    torch_only = _closure(roots) - without_torch
    version = {name: metadata.version(name) for name in without_torch | torch_only}
    return (
        {n: version[n] for n in sorted(without_torch)},
        {n: version[n] for n in sorted(torch_only, key=lambda n: (n != "torch", n))},
    )


def render_requirements() -> str:
    """containers/requirements-cpu.txt for the current environment."""
    main, torch = runtime_pins()
    lines = [
        "# Exact pins of tilepipe's runtime dependencies for the images (containers/*.def): the",
        "# runtime closure of pyproject.toml's dependencies in the environment the tests run in",
        "# (`make demo`), nothing from the [workflow] or [dev] extras; setuptools builds tilepipe.",
        "# Regenerate: python -m tests.workflow.test_containers > containers/requirements-cpu.txt",
        *(f"{name}=={version}" for name, version in main.items()),
        f"{TORCH_MARKER}: PyTorch and what only it needs. tilepipe-cpu installs this block as",
        "# it is (the CPU wheel, from PyTorch's CPU index), tilepipe-cuda swaps +cpu for a CUDA",
        "# variant, tilepipe-lumi-rocm stops at this line and keeps the centre image's ROCm build.",
        *(f"{name}=={version}" for name, version in torch.items()),
    ]
    return "\n".join(lines) + "\n"


def read_requirements() -> tuple[dict[str, str], dict[str, str]]:
    """(pins before the PyTorch block, pins in it) of containers/requirements-cpu.txt."""
    blocks: tuple[dict[str, str], dict[str, str]] = ({}, {})
    current = blocks[0]
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith(TORCH_MARKER):
            current = blocks[1]
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)", line.strip())
        assert m, f"not an exact pin: {line!r}"
        name = canonicalize_name(m.group(1))
        assert name not in blocks[0] and name not in blocks[1], f"{name} pinned twice"
        current[name] = m.group(2)
    return blocks


def test_requirements_are_exact_pins_with_torch_in_its_own_block():
    main, torch = read_requirements()
    assert REQUIREMENTS.read_text().count(TORCH_MARKER) == 1
    assert torch["torch"] == f"{TORCH_PIN}+cpu"
    assert not set(main) & set(torch)
    assert {"numpy", "rasterio", "pyproj", "pyogrio", "catboost", "setuptools"} <= set(main)


def test_requirements_pin_what_the_tests_run_with():
    """The images must run what was tested: same packages, same versions, nothing missing."""
    assert read_requirements() == runtime_pins(), (
        "containers/requirements-cpu.txt differs from this environment; regenerate it with "
        "`python -m tests.workflow.test_containers > containers/requirements-cpu.txt`"
    )


# ---------------------------------------------------------------------------------------------
# the profiles' command lines, through the stand-in


def test_profiles_expect_the_images_this_directory_builds():
    want_gpu = {True: "containers/tilepipe-cuda.sif", False: "containers/tilepipe-lumi-rocm.sif"}
    for cluster in CLUSTERS:
        path = REPO / "profiles" / cluster / "config.yaml"
        assert path.exists(), f"profiles/{cluster}/config.yaml is missing"
        images = yaml.safe_load(path.read_text())["config"]["containers"]
        assert images == {"cpu": "containers/tilepipe-cpu.sif", "gpu": want_gpu[NVIDIA[cluster]]}
        for sif in images.values():
            assert (REPO / sif).with_suffix(".def").exists(), sif


@pytest.mark.parametrize("name", ["apptainer", "singularity"])
def test_snakemake_accepts_the_standin_under_either_name(tmp_path, name):
    (tmp_path / name).symlink_to(STANDIN / "apptainer")
    probe = (
        "from snakemake.deployment.singularity import Singularity\n"
        "s = Singularity(); s.check(); print(s.binary, s.version)"
    )
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{Path(sys.executable).parent}"}
    run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[0] == name


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), value)


def _run_profile(cluster: str, base: Path) -> dict:
    """Run one scene's chain to dr.tif with the cluster's profile through the stand-in."""
    work = base / "work"
    work.mkdir()
    for name in ("Snakefile", "workflow", "config", "profiles", "models", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    # a smaller demo: one tile, 32 px windows (the chain and its command lines are the same)
    config_path = work / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["tiles"] = [SCENE[0]]
    config["demo"]["size"] = 32
    config["window"].update(width=32, height=32)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    # a profile path that starts at the file-system root (LUMI's /scratch/...) is moved under
    # `root`, so the test writes nothing outside its directory; everything else is as committed
    root = base / "root"
    profile_path = work / "profiles" / cluster / "config.yaml"
    profile = yaml.safe_load(profile_path.read_text())
    env_cfg = profile["config"]["cluster"]["env"]
    for key in ("TMPDIR", "APPTAINER_CACHEDIR", "SINGULARITY_CACHEDIR"):
        if env_cfg.get(key, "").startswith("/"):
            env_cfg[key] = f"{root}{env_cfg[key]}"
    if profile.get("apptainer-prefix", "").startswith("/"):
        profile["apptainer-prefix"] = f"{root}{profile['apptainer-prefix']}"
    tmpdir_resource = str(profile["default-resources"].get("tmpdir", ""))
    if tmpdir_resource.startswith("'/"):
        profile["default-resources"]["tmpdir"] = f"'{root}{tmpdir_resource[1:]}"
    profile_path.write_text(yaml.safe_dump(profile, sort_keys=False))
    for sif in profile["config"]["containers"].values():
        (work / sif).parent.mkdir(parents=True, exist_ok=True)
        (work / sif).touch()  # an image file to point at: the stand-in never opens it

    bindir = base / "bin"
    bindir.mkdir()
    # LUMI has only `singularity`; Snakemake prefers `apptainer` where both exist
    for name in ("singularity",) if cluster == "lumi" else ("apptainer", "singularity"):
        (bindir / name).symlink_to(STANDIN / "apptainer")
    log = base / "apptainer.jsonl"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPTAINER", "SINGULARITY", "XDG_"))
        and k not in ("TMPDIR", "PROJ_DATA", "WANDB_MODE", "PYTORCH_HIP_ALLOC_CONF")
    }
    env.update(
        PATH=os.pathsep.join([str(bindir), str(Path(sys.executable).parent), env["PATH"]]),
        HOME=str(base / "home"),
        USER="tester",
        TILEPIPE_ACCOUNT="project_465000000" if cluster == "lumi" else "nn0000k",
        USERWORK=str(base / "userwork"),
        TILEPIPE_SCRATCH=str(base / "scratch"),
        APPTAINER_STANDIN_LOG=str(log),
        # the image's PROJ_DATA does not exist on this host: the host's libraries keep their own
        APPTAINER_STANDIN_HOST_ENV="PROJ_DATA",
    )
    target = "results/{}/{}/dr.tif".format(*SCENE)
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", f"profiles/{cluster}", *LOCAL, target],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if run.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-1500:]}" for p in (work / "logs").rglob("*.log"))
        pytest.fail(f"snakemake --profile profiles/{cluster} failed:\n{run.stderr[-5000:]}\n{logs}")
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {"work": work, "env": env, "profile": profile, "records": records, "target": target}


@pytest.fixture(scope="module")
def profile_run(tmp_path_factory):
    """`profile_run(cluster)`: that cluster's recorded run (each cluster runs once)."""
    runs: dict[str, dict] = {}

    def get(cluster: str) -> dict:
        if not (REPO / "profiles" / cluster / "config.yaml").exists():
            pytest.fail(f"profiles/{cluster}/config.yaml is missing")
        if cluster not in runs:
            runs[cluster] = _run_profile(cluster, tmp_path_factory.mktemp(f"apptainer-{cluster}"))
        return runs[cluster]

    return get


def step_of(record: dict) -> str:
    """The tilepipe step a recorded container call runs (`tilepipe superres ...` -> superres)."""
    m = re.search(r"\btilepipe ([a-z-]+)", record["command"][-1])
    assert m, record["command"]
    return m.group(1)


def option_names(record: dict) -> list[str]:
    return [name for name, _ in record["options"]]


@pytest.mark.workflow
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_every_rule_of_the_chain_runs_in_a_container(profile_run, cluster):
    run = profile_run(cluster)
    steps = [step_of(r) for r in run["records"]]
    assert set(steps) == CHAIN and len(steps) == len(CHAIN), steps
    for record in run["records"]:
        assert record["subcommand"] == "exec", record["argv"]
        assert record["binary"] == ("singularity" if cluster == "lumi" else "apptainer")
    assert (run["work"] / run["target"]).stat().st_size > 0


@pytest.mark.workflow
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_gpu_rules_use_the_gpu_image_and_cpu_rules_the_cpu_image(profile_run, cluster):
    run = profile_run(cluster)
    images = run["profile"]["config"]["containers"]
    for record in run["records"]:
        role = "gpu" if step_of(record) in GPU_STEPS else "cpu"
        assert record["image"] == images[role], (step_of(record), record["image"])


@pytest.mark.workflow
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_nv_exactly_on_nvidia_clusters_and_never_rocm(profile_run, cluster):
    for record in profile_run(cluster)["records"]:
        names = option_names(record)
        assert ("--nv" in names) == NVIDIA[cluster], (cluster, record["argv"])
        assert "--rocm" not in names and "--rocm" not in " ".join(record["argv"])


@pytest.mark.workflow
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_env_disables_wandb_and_names_the_images_proj_database(profile_run, cluster):
    for record in profile_run(cluster)["records"]:
        assert record["env_args"].get("WANDB_MODE") == "disabled", record["argv"]
        assert record["env_args"].get("PROJ_DATA") == PROJ_DATA, record["argv"]
        assert record["container_env"]["WANDB_MODE"] == "disabled"


@pytest.mark.workflow
def test_lumi_binds_through_singularity_bind_and_passes_the_hip_allocator(profile_run):
    run = profile_run("lumi")
    snakemake_own = str(Path(run["env"]["HOME"]) / ".cache" / "snakemake")
    for record in run["records"]:
        binds = record["host_env"]["SINGULARITY_BIND"] or ""
        assert set(binds.split(",")) >= LUMI_BINDS, binds
        # no bind of the profile's own: only what Snakemake adds (its source cache)
        for name, value in record["options"]:
            if name == "--bind":
                assert value.startswith(snakemake_own), value
        assert record["container_env"]["PYTORCH_HIP_ALLOC_CONF"] == "expandable_segments:True"
        assert record["env_args"].get("PYTORCH_HIP_ALLOC_CONF") == "expandable_segments:True"


@pytest.mark.workflow
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_temporary_files_and_the_image_cache_stay_off_home(profile_run, cluster):
    run = profile_run(cluster)
    home = run["env"]["HOME"]
    wanted = run["profile"]["config"]["cluster"]["env"]
    for record in run["records"]:
        for key in ("APPTAINER_CACHEDIR", "SINGULARITY_CACHEDIR"):
            value = record["host_env"][key]
            assert value == _expand(wanted[key], run["env"]), (key, value)
            assert not value.startswith(home) and Path(value).is_dir(), (key, value)
        tmpdir = _expand(wanted["TMPDIR"], run["env"])
        assert not tmpdir.startswith(home) and Path(tmpdir).is_dir(), tmpdir
        # apptainer's own temporary files, and the job's inside the container. Snakemake sets
        # TMPDIR to each job's `tmpdir` resource, by default the TMPDIR it started with
        hint = f"{step_of(record)}: TMPDIR {record['host_env']['TMPDIR']}, not the profile's"
        assert record["host_env"]["TMPDIR"] == tmpdir, hint
        assert record["container_env"]["TMPDIR"] == tmpdir, hint


if __name__ == "__main__":
    print(render_requirements(), end="")
