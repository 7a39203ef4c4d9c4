"""The user's model as the tiling engine calls it: one batch of windows at a time, guarded.

This is the one place where code tilepipe does not own (a registered network, a TorchScript
file, a ``predict`` function) runs inside the engine. Whatever it raises becomes a
:class:`~tilepipe.core.errors.ModelError` naming the model, tile, date and the windows, with the
original exception chained and its traceback in the debug log; output of the wrong shape or
with non-finite values (NaN, +Inf, -Inf) is refused the same way, before it is blended or cast
to the output's integers, where NaN would read back as nodata and Inf as a valid maximum.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from tilepipe.core.errors import ModelError, TilepipeError

log = logging.getLogger(__name__)

#: predict(patches (B, C, p, p) float32) -> (B, out_bands, p*scale, p*scale) float32
Predict = Callable[[np.ndarray], np.ndarray]

#: A line that already names its exception type ("RuntimeError: ..."), as TorchScript's end.
_NAMED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Warning)\b:")


@dataclass(frozen=True)
class Model:
    """The ``predict`` function, its batch and bands, its name and the scene it runs for.

    ``where`` is the ``context(tile, date, path)`` prefix every error of the model starts with.
    """

    predict: Predict
    batch: int
    bands: int
    name: str = "predict"
    where: str = ""


def cause(exc: BaseException) -> str:
    """One line for an exception: its type and the last line of its message.

    TorchScript puts its own traceback first and the error itself on the last line.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if _NAMED.match(last):
        return last
    return f"{type(exc).__name__}: {last}" if last else type(exc).__name__


def windows_at(row0: int, cols: list[int]) -> str:
    """The windows of a batch, in source pixels: their row and columns."""
    where = f"column {cols[0]}" if len(cols) == 1 else f"columns {cols[0]}..{cols[-1]}"
    return f"window{'s' if len(cols) > 1 else ''} at source row {row0}, {where}"


def call(model: Model, x: np.ndarray, at: str) -> np.ndarray:
    """Run the model on one batch; anything it raises becomes a ModelError naming it."""
    try:
        return np.asarray(model.predict(x), dtype=np.float32)
    except TilepipeError:
        raise
    except Exception as exc:  # user code: torch, TorchScript and Python raise many types
        log.debug("%smodel %s failed on the %s", model.where, model.name, at, exc_info=exc)
        raise ModelError(
            f"{model.where}model {model.name} failed on the {at}: {cause(exc)}"
        ) from exc


def non_finite(values: np.ndarray) -> str:
    """Which non-finite kinds (NaN, +Inf, -Inf) ``values`` holds, comma-separated."""
    kinds = [
        ("NaN", np.isnan(values).any()),
        ("+Inf", np.isposinf(values).any()),
        ("-Inf", np.isneginf(values).any()),
    ]
    return ", ".join(name for name, found in kinds if found)


def check_finite(model: Model, y: np.ndarray, row0: int, cols: list[int]) -> None:
    """Refuse a batch with a non-finite value, naming the first window that holds one."""
    if np.isfinite(y).all():
        return
    k = int(np.flatnonzero(~np.isfinite(y).reshape(len(y), -1).all(axis=1))[0])
    bad = y[k][~np.isfinite(y[k])]
    raise ModelError(
        f"{model.where}model {model.name} returned non-finite values ({non_finite(bad)}) in "
        f"{bad.size} of {y[k].size} outputs of the {windows_at(row0, [cols[k]])}: "
        "refusing to write them as pixels"
    )


def predict_batch(
    model: Model, patches: list[np.ndarray], p_out: int, row0: int, cols: list[int]
) -> torch.Tensor:
    """Run the model on the windows at source row ``row0`` and columns ``cols``; check its output.

    The output must be (windows, bands, p_out, p_out) and finite everywhere.
    """
    x = np.ascontiguousarray(np.stack(patches), np.float32)
    y = call(model, x, windows_at(row0, cols))
    want = (len(patches), model.bands, p_out, p_out)
    if y.shape != want:
        raise ModelError(
            f"{model.where}model {model.name} returned shape {y.shape} on the "
            f"{windows_at(row0, cols)}, expected {want}"
        )
    check_finite(model, y, row0, cols)
    return torch.from_numpy(y)


#: Output dtypes a model may return; an integer or bool output is refused on the first batch.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def probe_window(path: str | os.PathLike, patch: int) -> tuple[np.ndarray, int, int]:
    """One real window of the source (1, C, patch, patch) float32 from the raster's centre,
    zero-filled past its edges, and its source row and column: what the first-batch check
    runs the model on."""
    with rasterio.open(path) as src:
        col0, row0 = max((src.width - patch) // 2, 0), max((src.height - patch) // 2, 0)
        win = Window(col0, row0, patch, patch)
        data = src.read(window=win, boundless=True, fill_value=0)
    return data[np.newaxis].astype(np.float32), row0, col0


def first_batch(
    name: str,
    where: str,
    fn: Callable[[np.ndarray], torch.Tensor],
    probe: tuple[np.ndarray, int, int],
    want: tuple[int, ...],
    declared: str,
) -> None:
    """Run the bare model on one real window and hold its output to the sidecar before any
    compute: a floating-point dtype, the declared shape (batch, outputs, window x scale) and
    finite values; else a ModelError naming the model, the scene, the window and the sidecar's
    declaration. Nothing has been written when it raises."""
    x, row0, col0 = probe
    at = f"first batch (the {windows_at(row0, [col0])})"
    try:
        y = fn(x)
    except TilepipeError:
        raise
    except Exception as exc:  # user code: torch, TorchScript and Python raise many types
        log.debug("%smodel %s failed on the %s", where, name, at, exc_info=exc)
        raise ModelError(f"{where}model {name} failed on the {at}: {cause(exc)}") from exc
    if not isinstance(y, torch.Tensor):
        raise ModelError(f"{where}model {name} returned {type(y).__name__} on the {at}")
    if y.dtype not in FLOAT_DTYPES:
        raise ModelError(
            f"{where}model {name} returned dtype {y.dtype} on the {at}, expected floating "
            f"point ({declared}): nothing was computed or written"
        )
    if tuple(y.shape) != tuple(want):
        found, expected = tuple(y.shape), tuple(want)
        what = "output channels" if found[1:2] != expected[1:2] else "scale or window size"
        raise ModelError(
            f"{where}model {name} returned shape {found} on the {at}, the sidecar declares "
            f"{expected} ({declared}): wrong {what}; nothing was computed or written"
        )
    if not torch.isfinite(y).all():
        bad = non_finite(y.float().cpu().numpy())
        raise ModelError(
            f"{where}model {name} returned non-finite values ({bad}) on the {at}: "
            "nothing was computed or written"
        )
