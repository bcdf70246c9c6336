"""Which test-time options help each shipped model: TLC windows and the self-ensemble.

    python benchmarks/test_time.py [--tasks T ...] [--windows 128 192] [--ensemble-photos 3]
                                   [--photos datasets/photos/val] [--seed 2026] [--write-package]
                                   [--decide-only]

Every case of ``benchmarks/quality.py`` (same held-out photos, same fresh degradations, same
scoring) plus the clean photo is restored by the plain model (no TLC, no ensemble), with TLC
at each window, and with the self-ensemble on the first ``--ensemble-photos`` photos
(compared with the plain model on those same photos: the ensemble costs 4-8x the time). The
ensemble is the one that fits the task (:func:`restormer.ensemble.ensemble_for_task`: the 8
flips/rotations, the 4 flips for rain, a dual-pixel pair's 4 flips).
Printed per task and case: the plain PSNR and each option's gain over it.

The rule that picks a model's defaults judges an option by its mean gain over the task's
*main* cases (the degradations it is for) and guards the others (the mild case and the clean
photo, which a model must leave alone):

* TLC: the window with the largest mean gain, if that gain is at least 0.02 dB and no case,
  main or guard, loses more than 0.05 dB; else off.
* Self-ensemble: on only if its mean gain is at least 0.25 dB and no guard case loses more
  than 0.05 dB; smaller gains are not worth four to eight times the restore time on a CPU
  (users can still ask for it: ``--ensemble``).

``--decide-only`` applies the rule to the measurements already in the JSON file (no
restoring), e.g. after the rule changed.

Writes ``benchmarks/results/test_time.json`` (the tasks of earlier runs not measured again are
kept); ``--write-package`` also records each model's
choice in its shipped file (``restormer_restore_defaults`` metadata, see
:mod:`restormer.restore_defaults`), which ``restormer.load_model`` then applies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality
from result_file import RESULTS, write_json

from restormer import degradations, load_model, restore
from restormer.ensemble import ensemble_for_task
from restormer.io import to_gray
from restormer.restore_defaults import RestoreDefaults
from restormer.shipped import shipped_path
from restormer.tasks import TASKS

ROOT = quality.ROOT
TLC_MIN_GAIN = 0.02
TLC_MAX_LOSS = 0.05
ENSEMBLE_MIN_GAIN = 0.25


def measure_task(
    task: str,
    model: Any,
    photos: list[tuple[str, np.ndarray]],
    seed: int,
    windows: list[int],
    ensemble_photos: int,
) -> list[dict[str, Any]]:
    """Per case: the plain model's mean PSNR and each option's mean PSNR."""
    gray = task == "gaussian-gray-denoising"
    rows = []
    settings: dict[str, dict[str, Any]] = {"plain": {"tlc": 0, "ensemble": False}}
    settings |= {f"TLC {w}": {"tlc": w, "ensemble": False} for w in windows}
    for c, case in enumerate([*quality.cases(task), None]):
        scores: dict[str, list[float]] = {name: [] for name in settings}
        scores |= {"plain (subset)": [], "ensemble (subset)": []}
        for p, (_, photo) in enumerate(photos):
            clean = to_gray(photo) if gray else photo
            if case is None:  # the clean photo: must come back unchanged
                degraded, y_channel = degradations.undegraded(task, clean), False
            else:
                degraded = case.degrade(clean, np.random.default_rng([seed, c, p]))
                y_channel = case.y_channel
            for name, options in settings.items():
                value = quality._psnr(restore(degraded, model, **options), clean, y_channel)
                scores[name].append(value)
            if p < ensemble_photos:
                scores["plain (subset)"].append(scores["plain"][-1])
                out = restore(degraded, model, tlc=0, ensemble=True)
                scores["ensemble (subset)"].append(quality._psnr(out, clean, y_channel))
        row = {"case": "clean photo" if case is None else case.name}
        row |= {name: float(np.mean(values)) for name, values in scores.items() if values}
        rows.append(row)
    return rows


def choose(task: str, rows: list[dict[str, Any]], windows: list[int]) -> RestoreDefaults:
    """The defaults the rule above picks from one task's measurements."""
    guards = quality.guard_cases(task)
    main = [row for row in rows if row["case"] not in guards]
    guarded = [row for row in rows if row["case"] in guards]
    best, best_gain, notes = None, 0.0, []
    for window in windows:
        mean = float(np.mean([row[f"TLC {window}"] - row["plain"] for row in main]))
        worst = min(row[f"TLC {window}"] - row["plain"] for row in rows)
        notes.append(f"TLC {window} {mean:+.3f} dB (worst case {worst:+.3f})")
        if mean >= TLC_MIN_GAIN and worst >= -TLC_MAX_LOSS and mean > best_gain:
            best, best_gain = window, mean
    gain = float(np.mean([row["ensemble (subset)"] - row["plain (subset)"] for row in main]))
    worst = min(row["ensemble (subset)"] - row["plain (subset)"] for row in guarded)
    transforms = ensemble_for_task(task)
    label = RestoreDefaults(ensemble=True, ensemble_transforms=transforms).describe()
    notes.append(f"{label} {gain:+.3f} dB (guard cases {worst:+.3f})")
    measured = "mean gain over the main held-out cases: " + ", ".join(notes)
    ensemble = gain >= ENSEMBLE_MIN_GAIN and worst >= -TLC_MAX_LOSS
    return RestoreDefaults(
        tlc=best, ensemble=ensemble, ensemble_transforms=transforms, measured=measured
    )


def write_defaults(task: str, defaults: RestoreDefaults) -> Path:
    """Record ``defaults`` in the shipped file of ``task``; weights and other metadata kept."""
    from restormer.model import RestormerConfig
    from restormer.restore_defaults import RESTORE_DEFAULTS_METADATA_KEY
    from restormer.weights import CONFIG_METADATA_KEY, read_checkpoint, save_weights

    path = shipped_path(task)
    checkpoint = read_checkpoint(path)
    metadata = dict(checkpoint.metadata)
    config = RestormerConfig(**json.loads(metadata.pop(CONFIG_METADATA_KEY)))
    metadata[RESTORE_DEFAULTS_METADATA_KEY] = defaults.to_metadata()[RESTORE_DEFAULTS_METADATA_KEY]
    return save_weights(
        checkpoint.state_dict, path, config=config, metadata=metadata, overwrite=True
    )


def decide_again(tasks: list[str], write_package: bool) -> None:
    """Apply the rule to the measurements in the JSON file; record the choices."""
    out = RESULTS / "test_time.json"
    report = json.loads(out.read_text())
    for task in tasks:
        result = report["tasks"].get(task)
        if result is None:
            continue
        defaults = choose(task, result["cases"], report["windows"])
        result["defaults"] = {**defaults.__dict__, "description": defaults.describe()}
        print(f"{task}: {defaults.describe()} ({defaults.measured})")
        if write_package:
            write_defaults(task, defaults)
    write_json(out, report, indent=1)


def _table(results: dict[str, Any], windows: list[int]) -> str:
    names = [f"TLC {w}" for w in windows]
    head = f"{'task':<31}{'case':<20}{'plain':>8}" + "".join(f"{n:>10}" for n in names)
    lines = [head + f"{'ensemble':>10}  (gains in dB)"]
    for task, result in results.items():
        for row in result["cases"]:
            gains = "".join(f"{row[n] - row['plain']:>+10.3f}" for n in names)
            gain = row["ensemble (subset)"] - row["plain (subset)"]
            lines.append(f"{task:<31}{row['case']:<20}{row['plain']:>8.2f}{gains}{gain:>+10.3f}")
            task = ""
        lines.append(f"{'':<31}default: {result['defaults']['description']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT / "datasets" / "photos" / "val")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--windows", nargs="+", type=int, default=[128, 192])
    parser.add_argument("--ensemble-photos", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--write-package", action="store_true")
    parser.add_argument("--decide-only", action="store_true", help="no restoring: re-decide")
    args = parser.parse_args()
    if args.decide_only:
        decide_again(args.tasks, args.write_package)
        return

    photos = quality.held_out_photos(args.photos)
    command = " ".join(["python", "benchmarks/test_time.py", *sys.argv[1:]])
    results: dict[str, Any] = {}
    for task in args.tasks:
        if not shipped_path(task).is_file():
            print(f"{task}: skipped (no shipped model)", file=sys.stderr)
            continue
        model = load_model(task)
        RestoreDefaults(ensemble_transforms=ensemble_for_task(task)).apply(model)  # plain
        started = time.perf_counter()
        rows = measure_task(task, model, photos, args.seed, args.windows, args.ensemble_photos)
        defaults = choose(task, rows, args.windows)
        results[task] = {
            "cases": rows,
            "defaults": {**defaults.__dict__, "description": defaults.describe()},
            "seconds": round(time.perf_counter() - started, 1),
            "command": command,
        }
        print(f"{task}: {results[task]['seconds']} s", file=sys.stderr, flush=True)
        if args.write_package:
            write_defaults(task, defaults)
    print(_table(results, args.windows))
    report = {
        "command": command,
        "photos": [name for name, _ in photos],
        "seed": args.seed,
        "windows": args.windows,
        "ensemble_photos": args.ensemble_photos,
        "rule": {
            "tlc_min_gain_db": TLC_MIN_GAIN,
            "tlc_max_loss_db": TLC_MAX_LOSS,
            "ensemble_min_gain_db": ENSEMBLE_MIN_GAIN,
        },
        "tasks": results,
    }
    out = RESULTS / "test_time.json"
    if out.is_file():  # a run of some tasks keeps the others' results
        earlier = json.loads(out.read_text()).get("tasks", {})
        report["tasks"] = {
            t: results.get(t, earlier.get(t)) for t in TASKS if t in results or t in earlier
        }
    write_json(out, report, indent=1)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
