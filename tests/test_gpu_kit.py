"""The GPU kit (benchmarks/gpu/kit.sh) carries what the GPU machine's image lacks: together the
two lists cover every distribution the GPU steps, the worker and the GPU benchmark import."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from .conftest import REPO

KIT = REPO / "benchmarks" / "gpu" / "kit.sh"
#: what a GPU job's process imports: the steps, the pool worker and bench_gpu.py's own modules
PROGRAM = """
import importlib.metadata as md, json, sys
sys.path.insert(0, {bench!r})
import tilepipe.cli, tilepipe.superres, tilepipe.fields.delineate, tilepipe.worker.server
import bench_gpu, bench_campaign
dists = md.packages_distributions()
names = {{d for m in list(sys.modules) for d in dists.get(m.split('.')[0], [])}}
print(json.dumps(sorted(names)))
"""


def kit_list(name: str) -> set[str]:
    """A shell variable of kit.sh: the package names it holds, normalised."""
    text = re.search(rf'^{name}="([^"]*)"', KIT.read_text(), re.MULTILINE).group(1)
    return {n.lower().replace("_", "-") for n in text.split()}


def test_the_gpu_kit_and_the_image_together_hold_every_imported_distribution():
    program = PROGRAM.format(bench=str(REPO / "benchmarks"))
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    imported = {n.lower().replace("_", "-") for n in json.loads(out.stdout)} - {"tilepipe"}
    missing = imported - kit_list("PACKAGES") - kit_list("IMAGE_HAS")
    assert not missing, f"neither the GPU kit nor the image holds {sorted(missing)}"
