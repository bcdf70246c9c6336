"""Ship the newest weights of a training run into the package when they restore better.

    python scripts/ship_model.py TASK [--experiments DIR] [--force] [--dry-run]
    python scripts/ship_model.py TASK --cache-shipped-only

Picks the run's latest weights or their moving average, whichever validates better on the
run's validation set (one degradation per held-out photo), then judges that candidate
against the model the package ships now on the held-out cases of ``benchmarks/quality.py``
(every case of the task on every held-out photo, six draws each with seeds of their own;
both models plain: no TLC, no ensemble; the shipped model's rows are kept in
``experiments/TASK/shipped_rows.json`` until its weights or the scoring code change, and
``--cache-shipped-only`` fills that file while the run still trains). It writes
``src/restormer/models/TASK.safetensors`` (or with ``--force``) when

* the main cases (the degradations the task is for) improve on average, and
* every guard case (the mild degradation, the clean photo) either loses no more than
  0.15 dB or meets its own bar (mild: at most 0.5 dB below the input; clean: >= 40 dB):
  validation alone once picked a motion model that sharpened mild blur too much.

Weights are stored in float16 when that costs less than 0.005 dB on the validation set,
else float32. The file's ``restormer_training`` metadata records the
iterations and CPU hours of the whole lineage (the run plus any shipped model it was
warm-started from, see ``scripts/train_shipped.py``), the data and the command; the
test-time defaults of the model it replaces (``benchmarks/test_time.py``) carry over.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import restormer
from restormer.files import write_atomically
from restormer.model import Restormer
from restormer.restore_defaults import RestoreDefaults
from restormer.shipped import TRAINING_METADATA_KEY, TrainingRecord, shipped_path
from restormer.tasks import TASKS
from restormer.train import load_options
from restormer.train.checkpoint import ExperimentDir, load_state, newest_state
from restormer.train.validation import validate
from restormer.weights import load_model, read_checkpoint, save_weights

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402  (benchmarks/quality.py: the held-out cases)

FP16_TOLERANCE_DB = 0.005
# Draws of their own (validation draws with seed 0, quality.py with 2026). Six: a motion model
# that three draws judged better (+0.11 dB) failed its mild-blur guard on four more draws and
# lost 0.5 dB on quality.py's.
JUDGE_SEEDS = (1, 2, 3, 4, 5, 6)
GUARD_TOLERANCE_DB = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("--experiments", type=Path, default=ROOT / "experiments")
    parser.add_argument("--force", action="store_true", help="ship even if not better")
    parser.add_argument("--dry-run", action="store_true", help="judge, but write nothing")
    parser.add_argument(
        "--cache-shipped-only",
        action="store_true",
        help="only restore the shipped model's held-out cases now (the slow half of a judge, "
        "which can run while the candidate still trains), then stop",
    )
    args = parser.parse_args()

    experiment = ExperimentDir(args.experiments / args.task)
    options_file = experiment.root / "options.yml"
    if not options_file.is_file():
        raise SystemExit(f"{options_file}: no such file (start the run first)")
    options = load_options(options_file)
    if options.val is None or options.val_dataset is None:
        raise SystemExit(f"{options_file}: no validation set to judge by")
    if args.cache_shipped_only:
        if not shipped_path(args.task).is_file():
            raise SystemExit(f"{args.task}: the package ships no model to cache")
        shipped_rows(args.task, experiment, options)
        print(f"shipped rows kept in {experiment.root / 'shipped_rows.json'}")
        return
    state_path = newest_state(experiment)
    if state_path is None:
        raise SystemExit(f"{experiment.root}: no training state to ship")
    state = load_state(state_path)
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
    use_half = new - new_half < FP16_TOLERANCE_DB
    stored = {k: (v.half() if use_half else v.float()) for k, v in weights.items()}
    model.load_state_dict({k: v.float() for k, v in stored.items()})  # judged as stored

    target = shipped_path(args.task)
    defaults = RestoreDefaults()
    judged: tuple[RowCache, list[dict[str, Any]]] | None = None  # the candidate's rows
    if target.is_file():
        shipped = load_model(target)
        defaults = RestoreDefaults.from_metadata(read_checkpoint(target).metadata)
        RestoreDefaults().apply(shipped)  # validation restores with these: plain, as the candidate
        print(f"shipped model: {metric} {score(shipped):.4f}")
        rows_old, cache, photos = shipped_rows(args.task, experiment, options, shipped)
        rows_new = held_out_rows(args.task, model, photos)
        judged = (cache, rows_new)
        better, verdict = judge(args.task, rows_new, rows_old)
        print(verdict)
        if not better and not args.force:
            print("not better: nothing shipped")
            return
    if args.dry_run:
        print("dry run: nothing shipped")
        return

    lineage_file = experiment.root / "lineage.json"
    lineage = json.loads(lineage_file.read_text()) if lineage_file.is_file() else {}
    hours = _cpu_seconds(state, experiment) / 3600
    record = TrainingRecord(
        iterations=int(lineage.get("iterations", 0)) + int(state["iter"]),
        hours=round(float(lineage.get("hours", 0.0)) + hours, 2),
        gpu_minutes=round(float(lineage.get("gpu_minutes", 0.0)) + _burst_minutes(lineage), 1),
        data=_data_description(
            options.train_dataset, trained_on=_trained_images(state, experiment, args.task)
        ),
        options=f"configs/shipped/{args.task}.yml",
        command=_command(args.task, lineage),
        validation_psnr=round(new_half if use_half else new, 4),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    save_weights(
        stored,
        target,
        config=model.config,
        metadata={TRAINING_METADATA_KEY: record.to_json(), **defaults.to_metadata()},
        overwrite=True,
    )
    if judged is not None:
        judged[0].put(target, judged[1])  # the next judge need not restore this model again
    size = target.stat().st_size / 1e6
    stored_as = "float16" if use_half else "float32"
    print(f"shipped {target.relative_to(ROOT)} ({size:.1f} MB, {stored_as})")


def shipped_rows(
    task: str, experiment: ExperimentDir, options: Any, shipped: Restormer | None = None
) -> tuple[list[dict[str, Any]], RowCache, list[tuple[str, Any]]]:
    """The shipped model's held-out rows (restored plain, or from the cache), the cache and
    the held-out photos. ``shipped``: the model already loaded, plain."""
    target = shipped_path(task)
    photos = quality.held_out_photos(ROOT / str(options.val_dataset["dataroot_gt"]))
    cache = RowCache(experiment.root / "shipped_rows.json", photos)
    rows = cache.get(target)
    if rows is None:
        if shipped is None:
            shipped = load_model(target)
            RestoreDefaults().apply(shipped)
        rows = held_out_rows(task, shipped, photos)
        cache.put(target, rows)
    return rows, cache, photos


def held_out_rows(
    task: str, model: Restormer, photos: list[tuple[str, Any]]
) -> list[dict[str, Any]]:
    """The mean PSNR of ``model`` on every held-out case of ``task`` over the draws of
    ``JUDGE_SEEDS`` (one draw per photo moves a case's mean by a few tenths of a dB), plain
    (no TLC, no ensemble), without the BM3D baseline."""
    plain = {"tlc": 0, "ensemble": False}
    runs = [
        quality.evaluate_task(
            task, model, photos, seed, quality.Bm3d(False), plain, clean_photo=i == 0
        )
        for i, seed in enumerate(JUDGE_SEEDS)
    ]
    rows = runs[0]["cases"]
    for c, row in enumerate(rows[:-1]):  # the seeded cases (the clean photo is last)
        for key in ("input", "ours"):
            row[key] = sum(run["cases"][c][key] for run in runs) / len(runs)
        row["pass"] = quality.passes(row)
    return rows


class RowCache:
    """The shipped model's held-out rows, kept in a JSON file beside the run.

    Restoring the shipped model on every draw is half of a judge's time, and its rows do not
    change until the model's weights, the held-out photos, the draws or the code that degrades
    and scores them do: all of those make the key.
    """

    def __init__(self, path: Path, photos: list[tuple[str, Any]]) -> None:
        self.path = path
        self._context = hashlib.sha256()
        for source in sorted(_scoring_sources()):
            self._context.update(source.read_bytes())
        self._context.update(json.dumps([[name for name, _ in photos], JUDGE_SEEDS]).encode())
        for _, pixels in photos:
            self._context.update(np.ascontiguousarray(pixels).tobytes())

    def _key(self, model_file: Path) -> str:
        """The context and the file's weights: its metadata (test-time defaults) may change."""
        key = self._context.copy()
        for name, tensor in sorted(read_checkpoint(model_file).state_dict.items()):
            key.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
            key.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return key.hexdigest()

    def get(self, model_file: Path) -> list[dict[str, Any]] | None:
        """The rows kept for ``model_file``, or None."""
        if not self.path.is_file():
            return None
        try:
            kept = json.loads(self.path.read_text())
        except json.JSONDecodeError:
            return None
        return kept.get("rows") if kept.get("key") == self._key(model_file) else None

    def put(self, model_file: Path, rows: list[dict[str, Any]]) -> None:
        """Keep ``rows`` as those of ``model_file`` (replacing any others), atomically."""
        kept = json.dumps({"key": self._key(model_file), "rows": rows}).encode()
        write_atomically(self.path, kept, overwrite=True)


def _scoring_sources() -> list[Path]:
    """The code a held-out row depends on: the benchmark, the degradations, PSNR, restoring."""
    package = Path(restormer.__file__).resolve().parent
    return [
        Path(quality.__file__).resolve(),
        *package.glob("*.py"),
        *(package / "degradations").glob("*.py"),
    ]


def judge(task: str, new: list[dict[str, Any]], old: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether the ``new`` rows beat the ``old`` (see the module docstring), and why."""
    guards = quality.guard_cases(task)
    gains = {a["case"]: a["ours"] - b["ours"] for a, b in zip(new, old, strict=True)}
    main = [gain for case, gain in gains.items() if case not in guards]
    mean = sum(main) / len(main)
    lost = [
        row["case"]
        for row in new
        if row["case"] in guards
        and gains[row["case"]] < -GUARD_TOLERANCE_DB
        and not row.get("pass")
    ]
    text = ", ".join(f"{case} {gain:+.2f}" for case, gain in gains.items())
    verdict = f"held-out cases, candidate minus shipped (dB): {text}; main mean {mean:+.3f}"
    if lost:
        verdict += (
            f"; guard lost more than {GUARD_TOLERANCE_DB} dB, below its bar: {', '.join(lost)}"
        )
    return mean > 0 and not lost, verdict


def _command(task: str, lineage: dict[str, Any]) -> str:
    """The command that trains this lineage's last run again (a run warm-started from another
    task's model records that task in its ``lineage.json``, a ``--cycle`` run its cycle)."""
    if lineage.get("burst"):
        return burst_command(task, _bursts(lineage))
    command = f"python scripts/train_shipped.py {task}"
    if lineage.get("from"):
        command += f" --restart-from {lineage['from']}"
    cycle = lineage.get("cycle")
    if cycle:
        command += f" --cycle {cycle['iterations']} --cycle-lr {cycle['lr']:g}"
        if cycle.get("patch") is not None:
            command += f" --cycle-patch {cycle['patch']}"
        if cycle.get("loss") is not None:
            command += f" --cycle-loss {cycle['loss']}"
    return command


def burst_command(task: str, bursts: list[dict[str, Any]]) -> str:
    """The ``scripts/gpu_burst.py`` commands of a lineage's GPU bursts, in order (photos as
    ``gpu_burst.py --pack-photos .gpu/photos/train`` packs them for the lease)."""
    commands = []
    for index, burst in enumerate(bursts):
        command = (
            f"python scripts/gpu_burst.py {task} --minutes {burst['minutes']:g} "
            f"--batch {burst['batch']} --patch {burst['patch']} --lr {burst['lr']:g} "
            f"--seed {burst['seed']} --photos .gpu/photos/train --out bursts"
        )
        if burst.get("precision", "fp32") != "fp32":  # the first bursts did not record it
            command += f" --precision {burst['precision']}"
        if burst.get("compile"):
            command += f" --compile {burst['compile']}"
        if index:
            command += f" --warm-start bursts/{task}.state"
        commands.append(command)
    return " && ".join(commands)


def _bursts(lineage: dict[str, Any]) -> list[dict[str, Any]]:
    """The lineage's GPU bursts (``scripts/gpu_burst.py``), in order: earlier ones, the last."""
    return [*lineage.get("bursts", []), *([lineage["burst"]] if lineage.get("burst") else [])]


def _burst_minutes(lineage: dict[str, Any]) -> float:
    """Minutes on a lent GPU of the lineage's bursts."""
    return sum(float(burst["seconds"]) for burst in _bursts(lineage)) / 60


def _cpu_seconds(state: dict[str, Any], experiment: ExperimentDir) -> float:
    """CPU time of the run: the trainer sums each launch's CPU time. States from before it
    recorded any: their wall time x the threads ``train_shipped.py`` last wrote down."""
    if "cpu_seconds" in state:
        return float(state["cpu_seconds"])
    info = experiment.root / "threads.txt"
    threads = int(info.read_text().strip()) if info.is_file() else 1
    return float(state.get("elapsed_seconds", 0.0)) * threads


def _data_description(dataset: dict, root: Path = ROOT, trained_on: int | None = None) -> str:
    """The training folder, how many photos it held (extras named) and the degradation.

    ``trained_on``: the image count the last training run recorded. The folder may have grown
    since (the extra photos are added to it); then the photos trained on are the original
    ones first, and the count is the recorded one."""
    kind = dataset.get("degradation") or dataset.get("type", "")
    folder = Path(str(dataset.get("dataroot_gt", "")))
    photos = sorted((root / folder).glob("*.png"))
    extra = sum(p.resolve().parent.name == "extra_photos" for p in photos)
    count = len(photos)
    if trained_on is not None and photos and trained_on != count:
        extra = max(0, trained_on - (count - extra))
        count = trained_on
    if not count:
        return f"{folder.as_posix()} + on-the-fly {kind}"
    counted = f"{count} photos" + (
        f", {extra} of them from scripts/fetch_extra_photos.py" if extra else ""
    )
    return f"{folder.as_posix()} ({counted}) + on-the-fly {kind}"


def _trained_images(state: dict[str, Any], experiment: ExperimentDir, task: str) -> int | None:
    """How many training images the run's last launch had: its training state says so; states
    saved before the trainer recorded it fall back to the last count its log states, and to
    None without either."""
    if "training_images" in state:
        return int(state["training_images"])
    log = experiment.root / f"train_{task}.log"
    if not log.is_file():
        return None
    counts = re.findall(r"([\d,]+) training images", log.read_text())
    return int(counts[-1].replace(",", "")) if counts else None


if __name__ == "__main__":
    main()
