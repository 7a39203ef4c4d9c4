"""Fields of The World (FTW) checkpoints, loaded as ftw-tools writes them.

FTW's released field models are PyTorch Lightning ``.ckpt`` files of ftw-tools'
``CustomSemanticSegmentationTask`` (github.com/fieldsoftheworld/ftw-baselines,
``ftw_tools/training/trainers.py``): a dict whose ``hyper_parameters`` name a
segmentation-models-pytorch (smp) model (``model`` "unet", ``backbone`` "efficientnet-b3",
``in_channels`` 8 or 4, ``num_classes`` 3 or 2, ``model_kwargs``) and whose ``state_dict`` holds
the network under the prefix ``model.`` beside training-only entries (``criterion.weight``).
ftw-tools' inference (``ftw_tools/inference/inference.py``) divides the image by 3000, stacks
B04 B03 B02 B08 of window A then of window B, and applies softmax over background / field /
boundary. :func:`checkpoint_sidecar` states exactly that as a tilepipe sidecar, so a ``.ckpt``
loads with no sidecar written; :func:`load_ftw` rebuilds the smp network and loads its weights.

smp is the optional extra ``tilepipe[ftw]``; docs/models.md#fields-of-the-world says more.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from tilepipe.core.errors import ModelError

log = logging.getLogger(__name__)

#: Sidecar "architecture" of an FTW Lightning checkpoint; a ``.ckpt`` without sidecar is one.
FTW = "ftw"
#: Bands of one FTW window, in the network's channel order (ftw-tools' settings.py).
FTW_BANDS = ("B04", "B03", "B02", "B08")
#: ftw-tools' ``default_preprocess``: the image divided by 3000.
FTW_DIVIDE = 3000.0
#: Output classes of the 3-class and 2-class releases, in channel order.
FTW_CLASSES = {3: ("background", "field", "boundary"), 2: ("background", "field")}
#: smp models ftw-tools builds from ``hyper_parameters["model"]`` (trainers.py):
#: smp class name and fixed constructor arguments.
SMP_MODELS: dict[str, tuple[str, dict]] = {
    "unet": ("Unet", {}),
    "unet_r": ("Unet", {"decoder_channels": (16, 32, 64, 128, 256)}),
    "deeplabv3+": ("DeepLabV3Plus", {}),
    "upernet": ("UPerNet", {}),
}
#: smp's encoders downsample five times: windows must be a multiple of 2**5.
FTW_MULTIPLE = 32
EXTRA = "pip install 'tilepipe[ftw]' (segmentation-models-pytorch and timm)"


def read_checkpoint(path: Path, where: str, allow_pickle: bool = False) -> dict:
    """The checkpoint dict, read without running pickled code unless the sidecar allows it."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not allow_pickle, mmap=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"{where}checkpoint holds Python objects beyond tensors and plain containers "
            f"({str(exc).splitlines()[0][:200]}); if you trust the file, set "
            '"allow_pickle": true in its sidecar'
        ) from exc
    except Exception as exc:  # torch raises many types for damaged files
        raise ModelError(f"{where}cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, Mapping) or not {"state_dict", "hyper_parameters"} <= set(ckpt):
        raise ModelError(
            f"{where}not a Lightning checkpoint of ftw-tools: needs 'state_dict' and "
            "'hyper_parameters'"
        )
    return dict(ckpt)


def hparams_of(ckpt: Mapping, where: str) -> dict:
    """The task's hyper_parameters, checked for what building the network needs."""
    hp = dict(ckpt["hyper_parameters"])
    missing = [k for k in ("model", "backbone", "in_channels", "num_classes") if k not in hp]
    if missing:
        raise ModelError(f"{where}checkpoint's hyper_parameters lack {', '.join(missing)}")
    if hp["model"] not in SMP_MODELS:
        raise ModelError(
            f"{where}FTW model {hp['model']!r} is not supported (supported: "
            f"{', '.join(SMP_MODELS)}; the siamese fcsiam* and fcn models need torchgeo)"
        )
    return hp


def checkpoint_sidecar(path: Path, where: str) -> dict:
    """The sidecar ftw-tools' inference implies for a checkpoint (bands, dates, divide, classes)."""
    hp = hparams_of(read_checkpoint(path, where), where)
    channels, classes = int(hp["in_channels"]), int(hp["num_classes"])
    if channels % len(FTW_BANDS) or channels // len(FTW_BANDS) not in (1, 2):
        raise ModelError(
            f"{where}checkpoint takes {channels} channels: FTW models take B04 B03 B02 B08 of "
            "one or two windows (4 or 8); write a sidecar naming its bands"
        )
    outs = FTW_CLASSES.get(classes) or tuple(f"class{i}" for i in range(classes))
    roles = {"extent": "field", **({"boundary": "boundary"} if "boundary" in outs else {})}
    return {
        "id": f"ftw-{path.stem}",
        "architecture": FTW,
        "bands_in": list(FTW_BANDS),
        "dates": channels // len(FTW_BANDS),
        "bands_out": list(outs),
        "activation": "softmax",
        **({"roles": roles} if "field" in outs else {}),
        "scale": 1,
        "gsd_m": 10.0,
        "normalise": {"divide": FTW_DIVIDE},
        "patch": {"multiple": FTW_MULTIPLE},
        "trained_by": f"ftw-tools {hp['model']} {hp['backbone']} (hyper_parameters)",
    }


def import_smp(where: str) -> ModuleType:
    """segmentation_models_pytorch, or a ModelError saying which extra installs it."""
    try:
        importlib.import_module("torchvision")  # smp's encoders and timm import it
    except ModuleNotFoundError:
        pass  # smp's own import below says what is missing
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        # torchvision's C++ extension does not load beside this torch (a CUDA torchvision
        # wheel beside a CPU torch); its Python part, which smp needs, does once its two
        # unguarded op names exist. FTW's networks call none of torchvision's C++ ops.
        _declare_torchvision_ops()
    try:
        return importlib.import_module("segmentation_models_pytorch")
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"{where}FTW checkpoints need segmentation-models-pytorch ({exc}): {EXTRA}"
        ) from exc
    except (ImportError, RuntimeError) as exc:
        raise ModelError(
            f"{where}segmentation-models-pytorch does not import ({type(exc).__name__}: {exc}):"
            " install the torchvision built for this torch"
        ) from exc


_TV_LIBRARY: list = []  # keeps the torch.library handle alive for the process


def _declare_torchvision_ops() -> None:
    """Declare ``torchvision::nms`` and ``qnms`` (no kernels), as torchvision's Python part
    needs when its C++ extension did not load; logged, since torchvision.ops.nms then fails."""
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        del sys.modules[name]  # the half-imported package, so smp's import starts it anew
    if not _TV_LIBRARY:
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            with contextlib.suppress(RuntimeError):  # already declared: nothing to do
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_LIBRARY.append(lib)
    log.warning(
        "torchvision's C++ extension does not load beside torch %s: using its Python part only "
        "(FTW networks need none of its C++ ops)",
        torch.__version__,
    )


def network_state(ckpt: Mapping) -> dict[str, torch.Tensor]:
    """The network's weights: ``state_dict`` entries under ``model.``, the prefix removed
    (the task's other entries, such as ``criterion.weight``, only served training)."""
    return {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def build_network(hp: Mapping, where: str) -> nn.Module:
    """The smp network ftw-tools builds from ``hyper_parameters`` (no pretrained download)."""
    smp = import_smp(where)
    cls_name, fixed = SMP_MODELS[hp["model"]]
    kwargs = {} if hp["model"] == "unet_r" else dict(hp.get("model_kwargs") or {})
    try:
        return getattr(smp, cls_name)(
            encoder_name=hp["backbone"],
            encoder_weights=None,
            in_channels=int(hp["in_channels"]),
            classes=int(hp["num_classes"]),
            **fixed,
            **kwargs,
        )
    except KeyError as exc:
        known = [n for n in smp.encoders.get_encoder_names() if n.startswith("efficientnet")]
        raise ModelError(
            f"{where}unknown backbone {hp['backbone']!r} for segmentation-models-pytorch "
            f"{smp.__version__} (e.g. {', '.join(known[:8])}; or a timm encoder tu-NAME)"
        ) from exc
    except (RuntimeError, ValueError, TypeError) as exc:  # e.g. an unknown timm encoder
        raise ModelError(
            f"{where}cannot build smp {cls_name} from the checkpoint's hyper_parameters (backbone "
            f"{hp['backbone']!r}, model_kwargs {kwargs}): {type(exc).__name__}: {exc}"
        ) from exc


def state_mismatch(module: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Where ``state`` does not fit ``module``: missing, unexpected and mis-shaped tensors."""
    own = module.state_dict()
    lines = [
        f"{k}: checkpoint {tuple(state[k].shape)}, network {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    lines += [f"{k}: missing from the checkpoint" for k in own if k not in state]
    lines += [f"{k}: not in the network" for k in state if k not in own]
    return lines


def check_sidecar_fits(meta: Mapping, hp: Mapping, where: str) -> None:
    """Refuse a sidecar whose channels or outputs contradict the checkpoint's hyper_parameters."""
    channels = len(meta["bands_in"]) * int(meta.get("dates", 1))
    if channels != int(hp["in_channels"]):
        raise ModelError(
            f"{where}model {meta.get('id')}: the sidecar declares {channels} input channels "
            f"({' '.join(meta['bands_in'])} x {meta.get('dates', 1)} date) but the checkpoint's "
            f"hyper_parameters say in_channels={hp['in_channels']}"
        )
    if len(meta["bands_out"]) != int(hp["num_classes"]):
        raise ModelError(
            f"{where}model {meta.get('id')}: the sidecar declares {len(meta['bands_out'])} "
            f"outputs {list(meta['bands_out'])} but the checkpoint's hyper_parameters say "
            f"num_classes={hp['num_classes']}"
        )


def load_ftw(path: Path, meta: Mapping, where: str) -> nn.Module:
    """The FTW network of a checkpoint, its weights loaded strictly; every mismatch named."""
    ckpt = read_checkpoint(path, where, bool(meta.get("allow_pickle", False)))
    hp = hparams_of(ckpt, where)
    check_sidecar_fits(meta, hp, where)
    module = build_network(hp, where)
    state = network_state(ckpt)
    bad = state_mismatch(module, state)
    if bad:
        shown = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ModelError(
            f"{where}the checkpoint's hyper_parameters (model {hp['model']}, backbone "
            f"{hp['backbone']}, in_channels {hp['in_channels']}, num_classes "
            f"{hp['num_classes']}) contradict its state_dict: {shown}"
        )
    module.load_state_dict(state, strict=True)
    return module
