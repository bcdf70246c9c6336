"""Ship the newest weights of a training run into the package when they validate better.

    python scripts/ship_model.py TASK [--experiments DIR] [--force]

Validates the run's latest weights (its EMA weights when it keeps them) and the model the
package ships now on the run's own validation set (the held-out photos, degraded with fixed
seeds), and writes ``src/restormer/models/TASK.safetensors`` when the new one is better (or
with ``--force``). Weights are stored in float16 when that costs less than 0.005 dB on the
validation set, else float32. The file's ``restormer_training`` metadata records the
iterations and CPU hours of the whole lineage (the run plus any shipped model it was
warm-started from, see ``scripts/train_shipped.py``), the data and the command; the
test-time defaults of the model it replaces (``benchmarks/test_time.py``) carry over.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from restormer.model import Restormer
from restormer.restore_defaults import RestoreDefaults
from restormer.shipped import TRAINING_METADATA_KEY, TrainingRecord, shipped_path
from restormer.tasks import TASKS
from restormer.train import load_options
from restormer.train.checkpoint import ExperimentDir, load_state, newest_state
from restormer.train.validation import validate
from restormer.weights import load_model, read_checkpoint, save_weights

ROOT = Path(__file__).resolve().parent.parent
FP16_TOLERANCE_DB = 0.005


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("--experiments", type=Path, default=ROOT / "experiments")
    parser.add_argument("--force", action="store_true", help="ship even if not better")
    args = parser.parse_args()

    experiment = ExperimentDir(args.experiments / args.task)
    state_path = newest_state(experiment)
    if state_path is None:
        raise SystemExit(f"{experiment.root}: no training state to ship")
    state = load_state(state_path)
    options = load_options(experiment.root / "options.yml")
    if options.val is None or options.val_dataset is None:
        raise SystemExit(f"{experiment.root}/options.yml: no validation set to judge by")
    from restormer.data import build_validation_set

    images = build_validation_set(options.val_dataset)
    metric = next(iter(options.val.metrics))

    def score(model: Restormer) -> float:
        return validate(model, images, options.val)[metric]

    # The moving average is usually the better model, but not early in a run (it still
    # remembers the first weights): validate both and keep the better.
    network = options.network.to_dict()
    candidates = {"weights": state["model"]}
    if state.get("ema") is not None:
        candidates["moving average"] = state["ema"]
    scored = []
    for label, weights in candidates.items():
        model = Restormer(**network)
        model.load_state_dict(weights)
        full = score(model)
        print(f"{args.task}: iteration {state['iter']:,}, {label}: {metric} {full:.4f}")
        scored.append((full, label, weights))
    new, label, weights = max(scored, key=lambda s: s[0])
    model = Restormer(**network)
    model.load_state_dict({k: v.half().float() for k, v in weights.items()})
    new_half = score(model)
    print(f"{args.task}: {label} stored as float16: {metric} {new_half:.4f}")
    candidate = Restormer(**network)

    target = shipped_path(args.task)
    defaults = RestoreDefaults()
    if target.is_file():
        shipped = load_model(target)
        defaults = RestoreDefaults.from_metadata(read_checkpoint(target).metadata)
        RestoreDefaults().apply(shipped)  # judged as the candidate is: no TLC, no ensemble
        old = score(shipped)
        print(f"shipped model: {metric} {old:.4f}")
        if old >= new and not args.force:
            print("not better: nothing shipped")
            return

    lineage_file = experiment.root / "lineage.json"
    lineage = json.loads(lineage_file.read_text()) if lineage_file.is_file() else {}
    hours = float(state.get("elapsed_seconds", 0.0)) / 3600 * _threads(experiment)
    record = TrainingRecord(
        iterations=int(lineage.get("iterations", 0)) + int(state["iter"]),
        hours=round(float(lineage.get("hours", 0.0)) + hours, 2),
        data=_data_description(options.train_dataset),
        options=f"configs/shipped/{args.task}.yml",
        command=f"python scripts/train_shipped.py {args.task}",
        validation_psnr=round(new_half if new - new_half < FP16_TOLERANCE_DB else new, 4),
    )
    use_half = new - new_half < FP16_TOLERANCE_DB
    stored = {k: (v.half() if use_half else v.float()) for k, v in weights.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    save_weights(
        stored,
        target,
        config=candidate.config,
        metadata={TRAINING_METADATA_KEY: record.to_json(), **defaults.to_metadata()},
        overwrite=True,
    )
    size = target.stat().st_size / 1e6
    stored_as = "float16" if use_half else "float32"
    print(f"shipped {target.relative_to(ROOT)} ({size:.1f} MB, {stored_as})")


def _threads(experiment: ExperimentDir) -> int:
    """CPU threads the run used (``train_shipped.py`` records them; 1 otherwise)."""
    info = experiment.root / "threads.txt"
    return int(info.read_text().strip()) if info.is_file() else 1


def _data_description(dataset: dict) -> str:
    kind = dataset.get("degradation") or dataset.get("type", "")
    return f"{Path(str(dataset.get('dataroot_gt', ''))).as_posix()} + on-the-fly {kind}"


if __name__ == "__main__":
    main()
