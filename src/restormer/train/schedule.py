"""Learning rate per iteration, as the official scheduler and iteration counting produce it.

The official loop numbers iterations from 1 and steps its scheduler before every iteration
but the first, so iteration ``i`` trains with the rate after ``i - 1`` scheduler steps. The
rate is a pure function of the iteration here: nothing to save or restore on resume.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate

from restormer.train.options import SchedulerOptions


@dataclass(frozen=True)
class LearningRateSchedule:
    """Cyclic cosine annealing with restarts (``CosineAnnealingRestartCyclicLR``).

    Cycle ``k`` spans ``periods[k]`` scheduler steps and goes from
    ``eta_mins[k] + restart_weights[k] * (base_lr - eta_mins[k])`` down to ``eta_mins[k]``
    along a half cosine. ``CosineAnnealingRestartLR`` is the case of one shared ``eta_min``;
    a constant rate is one cycle with ``eta_min == base_lr``. Past the last cycle the rate
    stays at the last cycle's end. ``warmup_iter > 0`` ramps linearly from 0 to ``base_lr``
    over the first iterations, as BasicSR does.
    """

    base_lr: float
    periods: tuple[int, ...]
    restart_weights: tuple[float, ...]
    eta_mins: tuple[float, ...]
    warmup_iter: int = -1

    @classmethod
    def from_options(
        cls, options: SchedulerOptions, base_lr: float, warmup_iter: int = -1
    ) -> LearningRateSchedule:
        if options.type == "ConstantLR":
            return cls(base_lr, options.periods, (1.0,), (base_lr,), warmup_iter)
        return cls(base_lr, options.periods, options.restart_weights, options.eta_mins, warmup_iter)

    def after_steps(self, steps: int) -> float:
        """The rate after ``steps`` calls of the official scheduler's ``step()``."""
        ends = list(accumulate(self.periods))
        cycle = min(bisect_left(ends, steps), len(self.periods) - 1)
        start = ends[cycle] - self.periods[cycle]
        progress = min(steps - start, self.periods[cycle]) / self.periods[cycle]
        eta_min = self.eta_mins[cycle]
        weight = self.restart_weights[cycle]
        return eta_min + weight * 0.5 * (self.base_lr - eta_min) * (
            1 + math.cos(math.pi * progress)
        )

    def at_iteration(self, current_iter: int) -> float:
        """The rate iteration ``current_iter`` (counted from 1) trains with."""
        if self.warmup_iter > 0 and current_iter < self.warmup_iter:
            return self.base_lr * current_iter / self.warmup_iter  # BasicSR's linear warm-up
        return self.after_steps(current_iter - 1)
