"""Progressive learning: which patch size and batch size each training iteration uses.

Official semantics (``basicsr/train.py``): iterations count from 1; stage j holds for
``sum(iters[:j]) < current_iter <= sum(iters[:j+1])``; past the last boundary the last stage
continues. The batch size is per process (per GPU).
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from restormer.data.options import DatasetOptionError, checked_int, checked_int_list

__all__ = ["StageSchedule"]


@dataclass(frozen=True)
class StageSchedule:
    """Stages of ``iters[j]`` iterations at ``gt_sizes[j]`` patches, ``mini_batch_sizes[j]``
    samples per process. Lists (as in option files) are accepted and stored as tuples."""

    iters: tuple[int, ...]
    gt_sizes: tuple[int, ...]
    mini_batch_sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("iters", "gt_sizes", "mini_batch_sizes"):
            try:
                values = checked_int_list(getattr(self, name), name, minimum=1)
            except DatasetOptionError as exc:
                raise ValueError(str(exc)) from None
            object.__setattr__(self, name, values)
        if not len(self.iters) == len(self.gt_sizes) == len(self.mini_batch_sizes):
            raise ValueError(
                f"iters, gt_sizes and mini_batch_sizes differ in length ({len(self.iters)}, "
                f"{len(self.gt_sizes)}, {len(self.mini_batch_sizes)})"
            )

    @classmethod
    def from_options(
        cls, dataset_opt: Mapping[str, Any], *, key_prefix: str = "datasets.train"
    ) -> StageSchedule:
        """The schedule of an official ``datasets.train`` section.

        ``iters`` / ``gt_sizes`` / ``mini_batch_sizes`` when present; without ``gt_sizes``
        and ``mini_batch_sizes``, one stage of ``batch_size_per_gpu`` pairs of ``gt_size``
        patches (for all iterations). Raises :class:`DatasetOptionError` naming the key.
        """
        keys = ("iters", "gt_sizes", "mini_batch_sizes")
        present = {k: dataset_opt[k] for k in keys if dataset_opt.get(k) is not None}
        if "gt_sizes" not in present and "mini_batch_sizes" not in present:
            size = _required_int(dataset_opt, "gt_size", key_prefix)
            batch = _required_int(dataset_opt, "batch_size_per_gpu", key_prefix)
            return cls((1,), (size,), (batch,))
        for key in keys:
            if key not in present:
                others = " and ".join(k for k in keys if k != key)
                raise DatasetOptionError(f"{key_prefix}.{key}: required with {others}")
        lists = {k: checked_int_list(v, f"{key_prefix}.{k}", minimum=1) for k, v in present.items()}
        lengths = {len(v) for v in lists.values()}
        if len(lengths) != 1:
            sizes = ", ".join(f"{k} has {len(v)}" for k, v in lists.items())
            raise DatasetOptionError(
                f"{key_prefix}.mini_batch_sizes: iters, gt_sizes and mini_batch_sizes must "
                f"have one entry per stage ({sizes})"
            )
        return cls(lists["iters"], lists["gt_sizes"], lists["mini_batch_sizes"])

    @property
    def num_stages(self) -> int:
        return len(self.iters)

    def stage(self, current_iter: int) -> int:
        """The stage (0-based) of iteration ``current_iter`` (>= 1)."""
        current_iter = _check_iter(current_iter)
        ends = list(itertools.accumulate(self.iters))
        return min(bisect.bisect_left(ends, current_iter), self.num_stages - 1)

    def patch(self, current_iter: int) -> int:
        """Patch side (pixels) at iteration ``current_iter``."""
        return self.gt_sizes[self.stage(current_iter)]

    def batch(self, current_iter: int) -> int:
        """Samples per process at iteration ``current_iter``."""
        return self.mini_batch_sizes[self.stage(current_iter)]

    def samples_before(self, current_iter: int) -> int:
        """Samples one process draws in iterations 1 .. current_iter - 1 (sum of batch sizes)."""
        j = self.stage(current_iter)
        current_iter = _check_iter(current_iter)
        start = sum(self.iters[:j])  # iterations before stage j
        earlier = sum(n * b for n, b in zip(self.iters[:j], self.mini_batch_sizes[:j], strict=True))
        return earlier + (current_iter - 1 - start) * self.mini_batch_sizes[j]


def _required_int(opt: Mapping[str, Any], key: str, prefix: str) -> int:
    if opt.get(key) is None:
        raise DatasetOptionError(f"{prefix}.{key}: required")
    return checked_int(opt[key], f"{prefix}.{key}", minimum=1)


def _check_iter(current_iter: int) -> int:
    """``current_iter`` as an int >= 1 (numpy integers accepted, bools and floats not)."""
    try:
        value = operator.index(current_iter)
    except TypeError:
        value = 0
    if isinstance(current_iter, bool) or value < 1:
        raise ValueError(f"current_iter counts from 1, got {current_iter!r}")
    return value
