"""Test-time options a weights file carries as its defaults: TLC window and self-ensemble.

Whether TLC (:mod:`restormer.local_attention`) or the self-ensemble helps depends on the
model, so each shipped model records the choice measured on held-out photos
(``benchmarks/test_time.py``) in its ``restormer_restore_defaults`` metadata, as JSON::

    {"tlc": 192, "ensemble": false, "ensemble_transforms": "flips", "measured": "..."}

:func:`restormer.load_model` applies them to the model it returns
(:meth:`RestoreDefaults.apply`): TLC is switched on with that window and ``model.self_ensemble``
and ``model.ensemble_transforms`` set (:mod:`restormer.ensemble`: which copies the ensemble
averages, a property of the task's degradation), which :func:`restormer.restore` and ``restormer
restore`` use when not told otherwise (``tlc=0`` / ``--tlc 0`` and ``ensemble=False`` /
``--no-ensemble`` turn them off). Files without the entry (official checkpoints, ones trained by
users) get the plain model: no TLC, no ensemble.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from restormer.ensemble import ENSEMBLES, check_ensemble

__all__ = ["RESTORE_DEFAULTS_METADATA_KEY", "RestoreDefaults"]

RESTORE_DEFAULTS_METADATA_KEY = "restormer_restore_defaults"


@dataclass(frozen=True)
class RestoreDefaults:
    """What ``restore`` does to a model's images unless told otherwise."""

    tlc: int | None = None
    """TLC window in pixels (None: off)."""
    ensemble: bool = False
    """Average the restored copies of ``ensemble_transforms`` (4-8x the time)."""
    ensemble_transforms: str | None = None
    """Which (:data:`restormer.ensemble.ENSEMBLES`); None: by the model's input channels."""
    measured: str = ""
    """Why: the measurement behind the choice, in words."""

    def __post_init__(self) -> None:
        from restormer.local_attention import check_window

        object.__setattr__(self, "tlc", check_window(self.tlc))
        if not isinstance(self.ensemble, bool):
            raise ValueError(f"ensemble must be true or false, got {self.ensemble!r}")
        if self.ensemble_transforms is not None:
            check_ensemble(self.ensemble_transforms)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], name: str = "weights") -> RestoreDefaults:
        """The defaults recorded in a file's metadata; plain ones for files without any."""
        text = metadata.get(RESTORE_DEFAULTS_METADATA_KEY)
        if not text:
            return cls()
        try:
            raw: Any = json.loads(text)
            names = ("tlc", "ensemble", "ensemble_transforms", "measured")
            known = {k: raw[k] for k in names if k in raw}
            return cls(**known)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{name}: unreadable {RESTORE_DEFAULTS_METADATA_KEY} ({e})") from None

    def to_metadata(self) -> dict[str, str]:
        """The metadata entry that records these defaults."""
        return {RESTORE_DEFAULTS_METADATA_KEY: json.dumps(self.__dict__, sort_keys=True)}

    def apply(self, model: nn.Module) -> None:
        """Make these the model's own settings (TLC window, ``self_ensemble``,
        ``ensemble_transforms``)."""
        model.set_local_attention(self.tlc)  # type: ignore[operator]
        model.self_ensemble = self.ensemble
        model.ensemble_transforms = self.ensemble_transforms

    def describe(self) -> str:
        """A few words for tables: ``TLC 192``, ``x8``, ``x4 flips``, ``TLC 192, x8`` or ``-``
        (an ensemble that names no transforms counts as ``x8``)."""
        parts = [f"TLC {self.tlc}"] if self.tlc else []
        if self.ensemble:
            name = self.ensemble_transforms or "dihedral"
            parts += [f"x{ENSEMBLES[name]}" + ("" if name == "dihedral" else f" {name}")]
        return ", ".join(parts) or "-"
