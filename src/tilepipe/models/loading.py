"""The model registry (weights + JSON sidecar) and device handling.

A model is two files: the weights ``X.pt`` / ``X.pt2`` and ``X.json`` (id, architecture,
constructor arguments, bands, scale, normalisation and how it was trained). The routes in,
chosen by the sidecar's ``architecture``:

- ``"torch.export"``: a ``torch.export`` program saved with ``torch.export.save`` (``.pt2``);
- ``"torchscript"``: a ``torch.jit.save`` file;
- a built-in name (``srnet``, ``fieldnet``) or ``"package.module:Class"`` of an installed
  package, built with ``arch_kwargs`` and given a ``state_dict`` saved with ``torch.save``.
- ``"ftw"``: a Fields of The World Lightning checkpoint (``.ckpt``, :mod:`tilepipe.models.ftw`);
  one without a sidecar is read as ftw-tools reads it.

Everything that can be wrong with a model is checked by :func:`load_model` before any compute.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tilepipe.core.checksum import sha256_file
from tilepipe.core.errors import ConfigError, ModelError, context
from tilepipe.core.inputs import REFLECTANCE_BANDS
from tilepipe.core.raster import atomic_outputs
from tilepipe.models.ftw import FTW, checkpoint_sidecar, load_ftw
from tilepipe.models.nets import ARCHITECTURES
from tilepipe.models.sidecar import (
    Sidecar,
    check_traced_channels,
    check_weights,
    check_window,
    parse_sidecar,
)

#: Band order of every tilepipe raster and model.
BANDS: tuple[str, ...] = REFLECTANCE_BANDS


REQUIRED_META = ("id", "architecture", "arch_kwargs", "bands_in", "bands_out", "scale")
#: Sidecar "architecture" of a TorchScript file (``torch.jit.save``): no constructor needed.
TORCHSCRIPT = "torchscript"
#: Sidecar "architecture" of a ``torch.export`` program (``torch.export.save``, ``.pt2``).
EXPORT = "torch.export"
#: Routes whose file holds the whole program: the sidecar needs no ``arch_kwargs``.
PROGRAMS = (TORCHSCRIPT, EXPORT)
#: Routes that need no ``arch_kwargs``: programs, and FTW checkpoints (their hyper_parameters).
SELF_DESCRIBED = (*PROGRAMS, FTW)
#: Numeric precisions of inference: "auto" is bf16 autocast on GPU and fp32 on CPU.
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class LoadedModel:
    """A model ready for inference: eval-mode module, its sidecar and identity."""

    module: nn.Module
    meta: dict
    model_id: str
    sha256: str
    path: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    sidecar: Sidecar | None = None

    def __post_init__(self) -> None:
        """Parse the sidecar when the caller gave only its JSON."""
        if self.sidecar is None:
            self.sidecar = parse_sidecar(self.meta, context(path=self.path))

    @property
    def spec(self) -> Sidecar:
        """The checked sidecar (never None once built)."""
        assert self.sidecar is not None
        return self.sidecar

    @property
    def divide(self) -> float:
        """Reflectance scale: inputs are divided by this before the network."""
        return self.spec.normalise.divide


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Pick the torch device ("auto", "cpu" or "cuda", which covers CUDA and ROCm GPUs).

    On CPU the thread count follows SLURM_CPUS_PER_TASK when set, so a Slurm job uses exactly
    the cores it was given.
    """
    if isinstance(name, torch.device):
        dev = name
    elif name == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif name in ("cpu", "cuda"):
        if name == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but no CUDA or ROCm GPU is visible")
        dev = torch.device(name)
    else:
        raise ConfigError(f"unknown device {name!r}: use 'auto', 'cpu' or 'cuda'")
    if dev.type == "cpu":
        cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
        if cpus.isdigit() and int(cpus) > 0:
            torch.set_num_threads(int(cpus))
    return dev


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar beside a weights file: ``X.pt`` -> ``X.json``."""
    return Path(path).with_suffix(".json")


def import_class(spec: str, where: str = "") -> type[nn.Module]:
    """The class ``package.module:Class`` names, imported from an installed package."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ModelError(f"{where}architecture {spec!r}: name a class as package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"{where}architecture {spec!r}: cannot import {module_name} ({exc}); install the "
            "package that defines it in this environment"
        ) from exc
    cls = module
    for part in name.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise ModelError(f"{where}architecture {spec!r}: {module_name} has no {name}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelError(f"{where}architecture {spec!r} is not a torch.nn.Module class")
    return cls


def build_model(architecture: str, arch_kwargs: dict, where: str = "") -> nn.Module:
    """Instantiate a built-in architecture or a ``package.module:Class`` with its kwargs."""
    if ":" in architecture:
        return import_class(architecture, where)(**arch_kwargs)
    return ARCHITECTURES[architecture](**arch_kwargs)


def export_input_shape(program: torch.export.ExportedProgram) -> tuple[int | None, ...]:
    """The first input's shape an exported program was traced with: None marks a dynamic dim."""
    names = [
        spec.arg.name
        for spec in program.graph_signature.input_specs
        if spec.kind == torch.export.graph_signature.InputKind.USER_INPUT
    ]
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    val = nodes[names[0]].meta.get("val") if names else None
    if val is None:
        return ()
    return tuple(d if isinstance(d, int) else None for d in val.shape)


def load_export(path: Path, device: torch.device, where: str) -> tuple[nn.Module, tuple]:
    """A ``torch.export`` program as a module on ``device``, and its traced input shape."""
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch raises many types for damaged or foreign files
        raise ModelError(
            f"{where}cannot read torch.export program ({type(exc).__name__}: {exc})"
        ) from exc
    if device.type != "cpu":
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, str(device))
    shape = export_input_shape(program)
    if shape and shape[0] is not None:
        raise ModelError(
            f"{where}torch.export program was traced with a fixed batch of {shape[0]}: export "
            "it with a dynamic batch dimension (dynamic_shapes={0: torch.export.Dim('batch')}),"
            " the engine's last batch of a row is smaller"
        )
    return program.module(), shape


def save_model(module: nn.Module, path: str | os.PathLike, meta: dict) -> dict:
    """Write ``X.pt`` (state_dict) and ``X.json`` (meta + sha256 of the weights), together."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_outputs(path, sidecar_path(path)) as (weights_tmp, sidecar_tmp):
        torch.save(state, weights_tmp)
        meta = {**meta, "sha256": sha256_file(weights_tmp)}
        sidecar_tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


#: models a warm worker keeps loaded, by what identifies them (see :func:`model_cache`)
_CACHE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("model_cache", default=None)
log = logging.getLogger("tilepipe")


@contextlib.contextmanager
def model_cache() -> Iterator[dict]:
    """Within this block, :func:`load_model` hands back a model it already loaded from unchanged
    files (same path, size and mtime of weights and sidecar, same device): a warm worker loads
    each model once, not once per scene."""
    cache: dict = {}
    token = _CACHE.set(cache)
    try:
        yield cache
    finally:
        _CACHE.reset(token)


def _files_key(path: Path) -> tuple:
    """What says a model file and its sidecar are unchanged: path, size and mtime of each."""
    stats = []
    for f in (path, sidecar_path(path)):
        try:
            st = f.stat()
        except OSError:
            stats.append(None)
        else:
            stats.append((st.st_size, st.st_mtime_ns))
    return (str(path.resolve()), *stats)


def load_model(
    path: str | os.PathLike,
    *,
    expect_bands: Sequence[str] | None = None,
    expect_scale: int | None = None,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load and check a registered model; any mismatch or damage raises ModelError up front."""
    cache = _CACHE.get()
    if cache is None:
        return _load_model(Path(path), expect_bands, expect_scale, device)
    key = (
        _files_key(Path(path)),
        tuple(expect_bands or ()),
        expect_scale,
        str(device),
    )
    if key not in cache:
        cache[key] = _load_model(Path(path), expect_bands, expect_scale, device)
    else:
        log.info("model %s: already loaded in this worker (files unchanged)", path)
    return cache[key]


def _load_model(
    path: Path,
    expect_bands: Sequence[str] | None,
    expect_scale: int | None,
    device: str | torch.device,
) -> LoadedModel:
    """:func:`load_model` without the cache."""
    where = context(path=path)
    meta_path = sidecar_path(path)
    if not path.is_file():
        raise ModelError(f"{where}model weights file not found")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as exc:
        if path.suffix != ".ckpt":
            raise ModelError(f"{where}model sidecar {meta_path.name} not found") from exc
        meta = checkpoint_sidecar(path, where)  # an FTW checkpoint as it is: ftw-tools' needs
    except (OSError, ValueError) as exc:
        raise ModelError(f"{where}model sidecar {meta_path.name} is unreadable ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{where}model sidecar {meta_path.name} is not a JSON object")
    required = [
        k
        for k in REQUIRED_META
        if not (k == "arch_kwargs" and meta.get("architecture") in SELF_DESCRIBED)
    ]
    missing = [k for k in required if k not in meta]
    if missing:
        raise ModelError(f"{where}model sidecar lacks {', '.join(missing)}")
    arch = meta["architecture"]
    if arch not in ARCHITECTURES and arch not in SELF_DESCRIBED and ":" not in str(arch):
        raise ModelError(
            f"{where}unknown architecture {arch!r} (known: "
            f"{', '.join([*sorted(ARCHITECTURES), *SELF_DESCRIBED])}, or package.module:Class)"
        )
    sc = parse_sidecar(meta, where)
    if expect_bands is not None and list(meta["bands_in"]) != list(expect_bands):
        raise ModelError(
            f"{where}model expects bands {meta['bands_in']} but the data has {list(expect_bands)}"
        )
    if expect_scale is not None and int(meta["scale"]) != int(expect_scale):
        raise ModelError(f"{where}model scale is {meta['scale']}, this step needs {expect_scale}")

    digest = sha256_file(path)
    if meta.get("sha256") and meta["sha256"] != digest:
        raise ModelError(f"{where}weights sha256 {digest[:12]}… differs from the sidecar's")
    if arch == TORCHSCRIPT:
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # torch raises many types for damaged files
            raise ModelError(
                f"{where}cannot read TorchScript ({type(exc).__name__}: {exc})"
            ) from exc
        return _ready(module, meta, digest, path, device)
    if arch == FTW:
        return _ready(load_ftw(path, meta, where), meta, digest, path, device)
    if arch == EXPORT:
        dev = resolve_device(device)  # takes a name or a torch.device
        module, shape = load_export(path, dev, where)
        check_traced_channels(sc, shape, where)
        meta = {**meta, "export_input_shape": list(shape)}
        return LoadedModel(module, meta, str(meta["id"]), digest, path, dev)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise ModelError(f"{where}cannot read weights ({type(exc).__name__}: {exc})") from exc
    try:
        module = build_model(arch, dict(meta["arch_kwargs"]), where)
        module.load_state_dict(state, strict=True)
    except (TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise ModelError(f"{where}weights do not fit {arch} {meta['arch_kwargs']}: {exc}") from exc
    check_weights(sc, dict(meta["arch_kwargs"]), module, where)

    return _ready(module, meta, digest, path, device)


def _ready(
    module: nn.Module, meta: dict, digest: str, path: Path, device: str | torch.device
) -> LoadedModel:
    """Move a loaded module to its device in eval mode (channels_last on GPU)."""
    dev = resolve_device(device)  # takes a name or a torch.device
    module = module.to(dev).eval()
    if dev.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return LoadedModel(module, meta, str(meta["id"]), digest, path, dev)


def check_patch(meta: dict, patch: int, overlap: int, where: str = "") -> None:
    """Refuse a window size the model rules out: the sidecar's ``"patch"`` (``min``,
    ``multiple``, ``max``, ``exact``) and the spatial size a ``torch.export`` program was traced
    with when it is static."""
    rule = dict(meta.get("patch") or {})
    traced = [d for d in (meta.get("export_input_shape") or [])[2:] if d is not None]
    if traced and rule.get("exact") is None:
        rule["exact"] = traced[0]
    check_window(rule, patch, overlap, str(meta.get("id")), where)


def resolve_precision(name: str, device: torch.device) -> str:
    """Pick "bf16" or "fp32": ``auto`` is bf16 autocast on GPU (no GradScaler) and fp32 on CPU."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r}: use {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def maybe_compile(module: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile`` the module when asked (compiles lazily, on the first batch)."""
    return torch.compile(module, dynamic=False) if enabled else module


def forward_raw(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: np.ndarray,
    device: torch.device,
    precision: str = "auto",
) -> torch.Tensor:
    """``fn`` on numpy (B, C, h, w) float32 as the engine runs it, its output as returned (dtype
    kept): under ``torch.inference_mode``, channels_last on GPU, bf16 autocast when asked."""
    gpu = device.type == "cuda"
    bf16 = resolve_precision(precision, device) == "bf16"
    with torch.inference_mode():
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if gpu:
            t = t.pin_memory().to(device, non_blocking=True)
            t = t.contiguous(memory_format=torch.channels_last)
        if bf16:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                return fn(t)
        return fn(t)


def make_predict(
    fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device, precision: str = "auto"
) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a tensor function as numpy (B, C, h, w) float32 -> numpy float32 for the tiler.

    Runs under ``torch.inference_mode``; on GPU the input is channels_last; with precision bf16
    (the GPU default) the network runs under bf16 autocast (no GradScaler: nothing is trained).
    """

    def predict(x: np.ndarray) -> np.ndarray:
        y = forward_raw(fn, x, device, precision)
        with torch.inference_mode():
            return y.float().contiguous().cpu().numpy()

    return predict
