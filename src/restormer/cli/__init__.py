"""The ``restormer`` command: restore, evaluate, train, degrade, inspect or convert weights,
export.

Every user error ends as one line on stderr and a non-zero exit, never a traceback
(set ``RESTORMER_DEBUG=1`` to see one). Each command lives in its own module; importing
them registers them on :data:`app`.
"""

from __future__ import annotations

import os
import sys

from restormer.cli import degrade, evaluate, export, models, restore, serve, train, weights
from restormer.cli.common import app, err

__all__ = [
    "app",
    "degrade",
    "evaluate",
    "export",
    "main",
    "models",
    "restore",
    "serve",
    "train",
    "weights",
]


def main() -> None:
    """Entry point: run the app, turning anything unexpected into one line."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # a bug, not a user error: still no traceback unless asked
        if os.environ.get("RESTORMER_DEBUG"):
            raise
        err.print(f"error: {type(e).__name__}: {e} (set RESTORMER_DEBUG=1 for a traceback)")
        sys.exit(3)
