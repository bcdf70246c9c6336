"""The repository's scripts and benchmarks (files, not package modules) imported for tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str, monkeypatch: pytest.MonkeyPatch | None = None) -> ModuleType:
    """``ROOT/relative`` (e.g. ``"benchmarks/quality.py"``) as a module named by its stem.

    Its folder goes on ``sys.path`` so that it imports its siblings as it does when run, and
    the module is registered in ``sys.modules`` because dataclasses look their module up while
    being defined. With ``monkeypatch`` the module is fresh and both changes are undone after
    the test; without, a module loaded before is returned again.
    """
    path = ROOT / relative
    name = path.stem
    if monkeypatch is None:
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        if name in sys.modules:
            return sys.modules[name]
    else:
        monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if monkeypatch is None:
        sys.modules[name] = module
    else:
        monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module
