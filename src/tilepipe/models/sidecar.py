"""The model sidecar (``X.json``) parsed and checked in one place: what a model needs and gives.

A sidecar declares the input bands (Sentinel-2 L2A names, in the model's channel order), the
number of dates, the normalisation, the scale, the output channels with their activation and
roles, the window constraints and whether the model is deterministic. :func:`parse_sidecar`
turns the JSON into a :class:`Sidecar` or raises :class:`SidecarError` naming the model, the key
and what is wrong; every step reads its model's needs from the result, never from a constant.
The reference of every key is docs/engine.md#sidecar-reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tilepipe.core.errors import ModelError
from tilepipe.core.inputs import L2A_BANDS

if TYPE_CHECKING:  # torch is imported where a tensor is touched: config checks stay light
    import torch

ACTIVATIONS = ("identity", "sigmoid", "softmax")
#: Roles a field model's output channels can play, in the fields step's band order.
ROLES = ("extent", "boundary", "distance")
#: Output names of tilepipe's own field models -> role (when the sidecar has no ``roles``).
NAMED_ROLES = {
    "field_interior_logit": "extent",
    "extent_logit": "extent",
    "boundary_logit": "boundary",
    "distance_logit": "distance",
}
PATCH_KEYS = ("min", "multiple", "max", "exact")
#: ``arch_kwargs`` names that state the input channels, scale or output channels of a class.
IN_KWARGS = ("bands", "in_channels", "in_chans")
OUT_KWARGS = ("heads", "classes", "out_channels", "num_classes")


class SidecarError(ModelError):
    """A model's sidecar is malformed, contradicts its weights, or asks what tilepipe lacks."""


@dataclass(frozen=True)
class Normalise:
    """Model input = ((x / divide + offset) clipped to ``clip`` - mean) / std, per band.

    A super-resolution model's output is in the same units and is mapped back by the inverse
    (without the clip); every term left out of the sidecar is skipped, not applied as a no-op,
    so a divide-only model computes exactly ``net(x / divide) * divide``.
    """

    divide: float = 10000.0
    offset: float = 0.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    clip: tuple[float, float] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reflectance x 10^4 (B, C, h, w) -> the model's input units."""
        x = x / self.divide
        if self.offset:
            x = x + self.offset
        if self.clip is not None:
            x = x.clamp(*self.clip)
        if self.mean is not None:
            x = (x - _per_band(self.mean, x)) / _per_band(self.std, x)
        return x

    def inverse(self, y: torch.Tensor, order: Sequence[int] | None = None) -> torch.Tensor:
        """The model's output units -> reflectance x 10^4; ``order`` picks the input band of each
        output channel for mean/std."""
        if self.mean is not None:
            idx = list(order) if order is not None else list(range(len(self.mean)))
            mean = tuple(self.mean[i] for i in idx)
            std = tuple(self.std[i] for i in idx)  # type: ignore[index]
            y = y * _per_band(std, y) + _per_band(mean, y)
        if self.offset:
            y = y - self.offset
        return y * self.divide


def _per_band(values: Sequence[float] | None, like: torch.Tensor) -> torch.Tensor:
    """Per-channel constants shaped (1, C, 1, 1) on ``like``'s device and dtype."""
    import torch

    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


@dataclass(frozen=True)
class Sidecar:
    """A model's needs and outputs, checked: every step reads its model through this."""

    id: str
    architecture: str
    bands_in: tuple[str, ...]
    bands_out: tuple[str, ...]
    scale: int
    normalise: Normalise = field(default_factory=Normalise)
    dates: int = 1
    activation: str | None = None  # None: identity for DR, sigmoid for field models
    roles: dict[str, int] | None = None  # role -> output channel; None: from the names
    patch: dict[str, int] = field(default_factory=dict)
    deterministic: bool = True
    gsd_m: float | None = None

    @property
    def channels_in(self) -> int:
        """Input channels: the bands of every date, date after date."""
        return len(self.bands_in) * self.dates


def _fail(where: str, model: str, key: str, what: str) -> SidecarError:
    """The one-line error of a sidecar key."""
    return SidecarError(f"{where}model {model}: sidecar key '{key}' {what}")


def _number(value: object) -> bool:
    """Whether ``value`` is a finite JSON number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: object) -> bool:
    """Whether ``value`` is a JSON integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def parse_bands(meta: Mapping, where: str, model: str) -> tuple[str, ...]:
    """``bands_in``: distinct Sentinel-2 L2A band names in the model's channel order."""
    bands = meta.get("bands_in")
    if not isinstance(bands, list) or not bands or not all(isinstance(b, str) for b in bands):
        raise _fail(where, model, "bands_in", f"must be a list of band names, found {bands!r}")
    unknown = [b for b in bands if b not in L2A_BANDS]
    if unknown:
        raise _fail(
            where, model, "bands_in", f"names {unknown}, not Sentinel-2 L2A bands {list(L2A_BANDS)}"
        )
    if len(set(bands)) != len(bands):
        raise _fail(where, model, "bands_in", f"repeats a band: {bands}")
    return tuple(bands)


def parse_normalise(meta: Mapping, bands: int, where: str, model: str) -> Normalise:
    """``normalise``: divide (> 0), offset, per-band mean and std (std > 0), clip [lo, hi]."""
    spec = meta.get("normalise", {})
    if not isinstance(spec, Mapping):
        raise _fail(where, model, "normalise", f"must be an object, found {spec!r}")
    extra = sorted(set(spec) - {"divide", "offset", "mean", "std", "clip"})
    if extra:
        raise _fail(where, model, "normalise", f"has unknown keys {extra}")
    divide, offset = spec.get("divide", 10000.0), spec.get("offset", 0.0)
    if not _number(divide) or divide <= 0:
        raise _fail(where, model, "normalise.divide", f"must be a number > 0, found {divide!r}")
    if not _number(offset):
        raise _fail(where, model, "normalise.offset", f"must be a number, found {offset!r}")
    mean, std = spec.get("mean"), spec.get("std")
    if (mean is None) != (std is None):
        raise _fail(where, model, "normalise", "needs mean and std together")
    if mean is not None:
        for key, values in (("mean", mean), ("std", std)):
            if not (isinstance(values, list) and len(values) == bands):
                raise _fail(
                    where, model, f"normalise.{key}", f"needs one number per band ({bands})"
                )
            if not all(_number(v) for v in values):
                raise _fail(where, model, f"normalise.{key}", f"must be numbers, found {values}")
        if any(s <= 0 for s in std):
            raise _fail(where, model, "normalise.std", f"must be > 0, found {std}")
    clip = spec.get("clip")
    if clip is not None and not (
        isinstance(clip, list) and len(clip) == 2 and all(_number(v) for v in clip)
    ):
        raise _fail(where, model, "normalise.clip", f"must be [low, high], found {clip!r}")
    if clip is not None and clip[0] >= clip[1]:
        raise _fail(where, model, "normalise.clip", f"needs low < high, found {clip}")
    return Normalise(
        float(divide),
        float(offset),
        None if mean is None else tuple(float(v) for v in mean),
        None if std is None else tuple(float(v) for v in std),
        None if clip is None else (float(clip[0]), float(clip[1])),
    )


def parse_roles(meta: Mapping, outs: tuple[str, ...], where: str, model: str) -> dict | None:
    """``roles``: {role: output name} for extent (required), boundary and distance."""
    roles = meta.get("roles")
    if roles is None:
        return None
    if not isinstance(roles, Mapping):
        raise _fail(where, model, "roles", f"must map role -> output name, found {roles!r}")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise _fail(where, model, "roles", f"has unknown roles {unknown} (known: {list(ROLES)})")
    if "extent" not in roles:
        raise _fail(where, model, "roles", "needs an 'extent' output")
    missing = [n for n in roles.values() if n not in outs]
    if missing:
        raise _fail(where, model, "roles", f"names outputs {missing} not in bands_out {list(outs)}")
    if len(set(roles.values())) != len(roles):
        raise _fail(where, model, "roles", f"gives one output two roles: {dict(roles)}")
    return {role: outs.index(roles[role]) for role in ROLES if role in roles}


def parse_patch(meta: Mapping, where: str, model: str) -> dict[str, int]:
    """``patch``: window constraints min, multiple, max and exact, positive integers."""
    rule = meta.get("patch") or {}
    if not isinstance(rule, Mapping):
        raise _fail(where, model, "patch", f"must be an object, found {rule!r}")
    extra = sorted(set(rule) - set(PATCH_KEYS))
    if extra:
        raise _fail(where, model, "patch", f"has unknown keys {extra} (known: {list(PATCH_KEYS)})")
    bad = {k: v for k, v in rule.items() if not (_integer(v) and v >= 1)}
    if bad:
        raise _fail(where, model, "patch", f"needs positive integers, found {bad}")
    if "min" in rule and "max" in rule and rule["min"] > rule["max"]:
        raise _fail(where, model, "patch", f"has min {rule['min']} > max {rule['max']}")
    return dict(rule)


def parse_sidecar(meta: Mapping, where: str = "") -> Sidecar:
    """Check a sidecar's JSON and return what it declares; SidecarError names the bad key."""
    model = str(meta.get("id", "?"))
    bands = parse_bands(meta, where, model)
    outs = meta.get("bands_out")
    if not isinstance(outs, list) or not outs or not all(isinstance(o, str) for o in outs):
        raise _fail(where, model, "bands_out", f"must be a list of output names, found {outs!r}")
    if len(set(outs)) != len(outs):
        raise _fail(where, model, "bands_out", f"repeats a name: {outs}")
    scale = meta.get("scale")
    if not (_integer(scale) and scale >= 1):
        raise _fail(where, model, "scale", f"must be an integer >= 1, found {scale!r}")
    dates = meta.get("dates", 1)
    if dates not in (1, 2) or not _integer(dates):
        raise _fail(where, model, "dates", f"must be 1 or 2, found {dates!r}")
    activation = meta.get("activation")
    if activation is not None and activation not in ACTIVATIONS:
        raise _fail(
            where, model, "activation", f"must be one of {ACTIVATIONS}, found {activation!r}"
        )
    deterministic = meta.get("deterministic", True)
    if not isinstance(deterministic, bool):
        raise _fail(
            where, model, "deterministic", f"must be true or false, found {deterministic!r}"
        )
    gsd = meta.get("gsd_m")
    if gsd is not None and not (_number(gsd) and gsd > 0):
        raise _fail(where, model, "gsd_m", f"must be a number > 0, found {gsd!r}")
    return Sidecar(
        id=model,
        architecture=str(meta.get("architecture", "")),
        bands_in=bands,
        bands_out=tuple(outs),
        scale=int(scale),
        normalise=parse_normalise(meta, len(bands), where, model),
        dates=int(dates),
        activation=activation,
        roles=parse_roles(meta, tuple(outs), where, model),
        patch=parse_patch(meta, where, model),
        deterministic=deterministic,
        gsd_m=None if gsd is None else float(gsd),
    )


def check_source_bands(sc: Sidecar, available: Sequence[str], where: str, source: str) -> list[int]:
    """The index in ``available`` of each band the model takes, in its order; SidecarError
    names each band ``source`` lacks (and its native resolution)."""
    lacking = [b for b in sc.bands_in if b not in available]
    if lacking:
        native = ", ".join(f"{b} ({L2A_BANDS[b]} m)" for b in lacking)
        raise SidecarError(
            f"{where}model {sc.id} needs bands {native} that {source} lacks (it holds "
            f"{' '.join(available)})"
        )
    return [list(available).index(b) for b in sc.bands_in]


def check_sr_outputs(sc: Sidecar, wanted: Sequence[str], where: str) -> list[int]:
    """A DR model's output channel of each band of the dr.tif (``wanted``, in the dr.tif's
    order); its outputs must hold those bands (further ones, a 10-band model's, are not
    written), each output also one of its inputs."""
    if not set(wanted) <= set(sc.bands_out) or not set(sc.bands_out) <= set(sc.bands_in):
        raise SidecarError(
            f"{where}model {sc.id}: a DR model's bands_out must be the dr.tif bands "
            f"{list(wanted)} in any order (further L2A bands may follow), each also in "
            f"bands_in; found {list(sc.bands_out)}"
        )
    return [sc.bands_out.index(b) for b in wanted]


def field_roles(sc: Sidecar, where: str) -> dict[str, int]:
    """Role -> output channel of a field model: its ``roles``, else tilepipe's output names."""
    if sc.roles is not None:
        return sc.roles
    named = {NAMED_ROLES[o]: i for i, o in enumerate(sc.bands_out) if o in NAMED_ROLES}
    unknown = [o for o in sc.bands_out if o not in NAMED_ROLES]
    if unknown or "extent" not in named or len(named) != len(sc.bands_out):
        raise SidecarError(
            f"{where}fields model {sc.id} outputs {list(sc.bands_out)}: name each output's role "
            f"in the sidecar's 'roles' (extent required; boundary, distance optional), or use "
            f"the names {sorted(NAMED_ROLES)}"
        )
    return {role: named[role] for role in ROLES if role in named}


def check_weights(sc: Sidecar, arch_kwargs: Mapping, module: torch.nn.Module, where: str) -> None:
    """Refuse a sidecar that contradicts its weights: the class's arguments (bands, scale, heads)
    and the first convolution's input channels against bands_in x dates, scale and bands_out."""
    import torch

    for key in IN_KWARGS:
        if key in arch_kwargs and arch_kwargs[key] != sc.channels_in:
            raise _contradiction(sc, where, f"arch_kwargs {key}={arch_kwargs[key]}", "bands_in")
    if "scale" in arch_kwargs and arch_kwargs["scale"] != sc.scale:
        raise _contradiction(sc, where, f"arch_kwargs scale={arch_kwargs['scale']}", "scale")
    for key in OUT_KWARGS:
        if key in arch_kwargs and arch_kwargs[key] != len(sc.bands_out):
            raise _contradiction(sc, where, f"arch_kwargs {key}={arch_kwargs[key]}", "bands_out")
    first = next((m for m in module.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if first is not None and first.in_channels != sc.channels_in:
        raise _contradiction(
            sc, where, f"the first convolution takes {first.in_channels} channels", "bands_in"
        )


def check_traced_channels(sc: Sidecar, shape: Sequence[int | None], where: str) -> None:
    """Refuse a torch.export program traced with another channel count than the sidecar's."""
    if len(shape) > 1 and shape[1] is not None and shape[1] != sc.channels_in:
        raise _contradiction(
            sc, where, f"the program was traced with {shape[1]} channels", "bands_in"
        )


def _contradiction(sc: Sidecar, where: str, found: str, key: str) -> SidecarError:
    """The error of a sidecar key the weights contradict."""
    declared = {
        "bands_in": f"{sc.channels_in} input channels ({' '.join(sc.bands_in)} x {sc.dates} date)",
        "scale": f"scale {sc.scale}",
        "bands_out": f"{len(sc.bands_out)} outputs {list(sc.bands_out)}",
    }[key]
    return SidecarError(
        f"{where}model {sc.id}: the sidecar declares {declared} but {found}: the sidecar "
        "contradicts the weights"
    )


def check_window(rule: Mapping, patch: int, overlap: int, name: str, where: str = "") -> None:
    """Refuse a window the model cannot take: the sidecar's ``patch`` rule (``min``,
    ``multiple``, ``max``, ``exact``) against the engine's ``patch`` and ``overlap``."""
    least, multiple = int(rule.get("min", 1)), int(rule.get("multiple", 1))
    most, exact = rule.get("max"), rule.get("exact")
    if exact is not None and patch != int(exact):
        raise SidecarError(
            f"{where}model {name} takes windows of exactly {exact} px, got patch {patch}"
        )
    if most is not None and patch > int(most):
        raise SidecarError(f"{where}model {name} takes windows of at most {most} px, got {patch}")
    if patch < least or patch % multiple:
        raise SidecarError(
            f"{where}model {name} needs patch >= {least} and a multiple of {multiple}, "
            f"got patch {patch}"
        )
    if overlap % multiple:
        raise SidecarError(
            f"{where}model {name} needs overlap a multiple of {multiple}, got {overlap}"
        )
