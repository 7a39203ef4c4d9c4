"""The independent COG check: rio-cogeo's validator, with no error and no warning allowed."""

from __future__ import annotations

import os

from rio_cogeo.cogeo import cog_validate


def assert_valid_cog(path: str | os.PathLike) -> None:
    """Fail unless ``rio cogeo validate`` finds ``path`` a valid COG without any warning."""
    valid, errors, warnings = cog_validate(str(path), quiet=True)
    assert valid and not errors and not warnings, f"{path}: errors {errors}, warnings {warnings}"
