"""The official Restormer architecture, for side-by-side benchmarks only.

It comes from ``spandrel-extra-arches``, which ships a copy of the official
``restormer_arch.py``. Install it without its dependencies (it would pull spandrel and
more), plus einops, which the file imports:

    pip install einops && pip install --no-deps spandrel-extra-arches

Only that one file is loaded, with a stand-in for the ``spandrel.util`` decorator it uses.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

from torch import nn

INSTALL_HINT = "pip install einops && pip install --no-deps spandrel-extra-arches"


class OfficialUnavailable(RuntimeError):
    """The package that carries the official architecture is not installed."""


def _arch_file() -> Path:
    spec = importlib.util.find_spec("spandrel_extra_arches")
    if spec is None or spec.origin is None:
        raise OfficialUnavailable(f"the official architecture needs: {INSTALL_HINT}")
    path = Path(spec.origin).parent / "architectures" / "Restormer" / "__arch" / "restormer_arch.py"
    if not path.is_file():
        raise OfficialUnavailable(f"{path} is missing; reinstall: {INSTALL_HINT}")
    if importlib.util.find_spec("einops") is None:
        raise OfficialUnavailable(f"the official architecture imports einops: {INSTALL_HINT}")
    return path


def _stub_spandrel_util() -> None:
    """``spandrel.util.store_hyperparameters`` only records constructor arguments."""
    if "spandrel.util" in sys.modules:
        return
    util = types.ModuleType("spandrel.util")

    def store_hyperparameters():
        return lambda cls: cls

    util.store_hyperparameters = store_hyperparameters  # type: ignore[attr-defined]
    package = sys.modules.setdefault("spandrel", types.ModuleType("spandrel"))
    package.util = util  # type: ignore[attr-defined]
    sys.modules["spandrel.util"] = util


def official_restormer_class() -> type[nn.Module]:
    """The official ``Restormer`` class (keyword-only constructor, official defaults)."""
    path = _arch_file()
    _stub_spandrel_util()
    spec = importlib.util.spec_from_file_location("official_restormer_arch", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Restormer


def official_restormer(**config: object) -> nn.Module:
    """An official Restormer built with the given constructor arguments, in eval mode."""
    return official_restormer_class()(**config).eval()
