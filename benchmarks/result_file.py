"""Where a benchmark's JSON result goes: ``benchmarks/results/STEM[-NAME].json``, whole or not
at all (written beside it, then renamed, so an interrupted run leaves the old file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def result_path(stem: str, name: str | None = None) -> Path:
    """The file of benchmark ``stem``'s run called ``name`` (``--name``; none: the default run)."""
    return RESULTS / f"{stem}{'-' + name if name else ''}.json"


def write_json(path: Path, data: Any, *, indent: int = 2) -> None:
    """``data`` as indented JSON at ``path``, replacing it in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + "\n", "utf-8")
    os.replace(partial, path)


def write_result(stem: str, name: str | None, data: Any) -> Path:
    """Write a run's result to its file and say so; the path written."""
    path = result_path(stem, name)
    write_json(path, data)
    try:
        shown: Path = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    print(f"wrote {shown}")
    return path
