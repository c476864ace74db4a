"""Where a user's files go, per the XDG base directory specification."""

from __future__ import annotations

import os
from collections.abc import Mapping


def base_dir(variable: str, default: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """``$variable``, or ``~/default`` when it is unset, empty or relative (the spec says a
    relative path is invalid and to be ignored); None when there is no home either."""
    base = environ.get(variable, "")
    if os.path.isabs(base):
        return base
    home = os.path.expanduser("~")
    return os.path.join(home, default) if os.path.isabs(home) else None
