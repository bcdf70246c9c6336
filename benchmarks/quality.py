"""How good the shipped models are, on held-out photos with fresh degradations.

    python benchmarks/quality.py [--photos datasets/photos/val] [--tasks T ...]
                                 [--weights TASK=FILE ...] [--ensemble] [--tlc N]
                                 [--no-baselines] [--seed 2026] [--draws 6] [--name NAME]
                                 [--write-package]
    python benchmarks/quality.py --markdown    # README's table, from the package's numbers

For every task and each of its cases (noise levels, light and heavy rain, ...) every held-out
photo is degraded afresh ``--draws`` times (seeds ``[seed, case, photo]``, then ``[seed, case,
photo, draw]``: never the ones training validates with, nor those ``scripts/ship_model.py``
chooses models by), restored by the shipped model (``restormer.load_model(task)``, or
``--weights``) and scored. A model's gain varies from one draw to the next (by 3 dB, one
standard deviation, on light rain), so one draw a photo leaves a case's mean uncertain by up to
a dB; with six draws the standard error of a gain is 0.2-0.7 dB on rain, blur and camera noise
(0.03-0.05 on the Gaussian cases against BM3D). Printed per case: the mean PSNR of the degraded
input, of the classical baseline where there is one (CBM3D / BM3D from the ``bm3d`` package, for
Gaussian noise at the noise level it is told), and of ours with the standard error of its margin
over the target's reference (input or baseline; over the samples), the target of issue 5 and a
pass/fail mark. Two checks on every model besides: a *clean* photo must come back nearly
unchanged (ours >= 40 dB), and on the mildest degradations ours must not fall more than 0.5 dB
below the input.

PSNR is computed on 8-bit images (restored, clipped and rounded), RGB, or on the Y channel for
rain as the deraining papers score it; gray models on gray photos (``cv2`` RGB2GRAY). Each model
runs with its own test-time defaults (``restormer.load_model``: TLC, self-ensemble, chosen by
``benchmarks/test_time.py``), as ``restormer.restore(array, model)`` does, unless ``--tlc N``
(0: off) or ``--ensemble`` say otherwise. Writes ``benchmarks/results/quality[-NAME].json``;
``--write-package`` also copies the per-task numbers to ``src/restormer/models/quality.json``,
which ``restormer models`` shows. Both keep the tasks of earlier runs that a run with
``--tasks`` did not measure again. BM3D results are cached in
``benchmarks/results/bm3d-cache.json`` (they take minutes and depend only on the photo, the
seed, the draw and sigma). Make the held-out photos with ``python scripts/prepare_photos.py``
(the last 6 photos by name, never trained on).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from result_file import RESULTS, result_path, write_json

from restormer import degradations, load_model, restore
from restormer.io import read_image, to_float, to_gray
from restormer.metrics import calculate_psnr
from restormer.restore_defaults import RestoreDefaults
from restormer.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent
BM3D_CACHE = RESULTS / "bm3d-cache.json"

Degrade = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Case:
    """One row: how inputs are made, how they are scored, what ours must reach."""

    name: str
    degrade: Degrade
    target: str  # "input+8", "baseline+0.5", "" (reported, no target)
    sigma: float | None = None  # Gaussian noise level, for the BM3D baseline
    y_channel: bool = False
    mild: bool = False  # ours must not be worse than the input by more than 0.5 dB


def _with(task: str, **fixed: Any) -> Degrade:
    """The task's degradation with some parameters fixed (others drawn as in training)."""

    def degrade(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        params = dataclasses.replace(degradations.sample(task, rng), **fixed)
        return degradations.apply(task, clean, rng, params)

    return degrade


def _until(task: str, accept: Callable[[Any], bool]) -> Degrade:
    """The task's degradation, parameters redrawn until ``accept(params)``."""

    def degrade(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        params = degradations.sample(task, rng)
        while not accept(params):
            params = degradations.sample(task, rng)
        return degradations.apply(task, clean, rng, params)

    return degrade


def cases(task: str) -> list[Case]:
    """The cases of issue 5's quality table for ``task``, plus its mild case."""
    if task.startswith("gaussian"):
        gain = {"gaussian-color-denoising": (0.5, 0.8), "gaussian-gray-denoising": (0.3, 0.5)}
        g25, g50 = gain[task]
        rows = [
            Case(
                "sigma 15",
                _with(task, sigma=15.0),
                "input+8" if task == "gaussian-color-denoising" else "",
                15.0,
            ),
            Case("sigma 25", _with(task, sigma=25.0), f"baseline+{g25}", 25.0),
            Case("sigma 50", _with(task, sigma=50.0), f"baseline+{g50}", 50.0),
            Case("sigma 5", _with(task, sigma=5.0), "", 5.0, mild=True),
        ]
        return rows
    if task == "real-denoising":
        return [
            Case("camera noise", _until(task, lambda p: True), "input+6"),
            Case("low ISO", _until(task, lambda p: p.shot < 3e-4), "", mild=True),
        ]
    if task == "deraining":
        return [
            Case("light rain (Y)", _until(task, lambda p: not p.heavy), "input+8", y_channel=True),
            Case("heavy rain (Y)", _until(task, lambda p: p.heavy), "input+6", y_channel=True),
        ]
    if task == "motion-deblurring":
        return [
            Case("motion blur", _until(task, lambda p: True), "input+3"),
            Case("small shake", _until(task, lambda p: p.size <= 9), "", mild=True),
        ]
    if task == "defocus-deblurring":
        return [
            Case("defocus", _until(task, lambda p: True), "input+2.5"),
            Case(
                "slight defocus", _until(task, lambda p: max(map(abs, p.radii)) <= 2), "", mild=True
            ),
        ]
    if task == "dual-pixel-defocus-deblurring":
        return [
            Case("dual-pixel defocus", _until(task, lambda p: True), "input+3"),
            Case(
                "slight defocus", _until(task, lambda p: max(map(abs, p.radii)) <= 2), "", mild=True
            ),
        ]
    raise ValueError(task)


def guard_cases(task: str) -> set[str]:
    """The rows of ``task`` a model must leave (nearly) alone: its mild case, the clean photo.
    The others are its *main* cases, the degradations it is for."""
    return {case.name for case in cases(task) if case.mild} | {"clean photo"}


# --------------------------------------------------------------------------- scoring


def _psnr(image: np.ndarray, target: np.ndarray, y_channel: bool) -> float:
    a = np.round(np.clip(image, 0, 1) * 255).astype(np.float64)
    b = np.round(np.clip(target, 0, 1) * 255).astype(np.float64)
    if y_channel:
        a, b = a[..., ::-1], b[..., ::-1]  # calculate_psnr's Y weights expect BGR
    return calculate_psnr(a, b, test_y_channel=y_channel)


def _input_view(task: str, degraded: np.ndarray) -> np.ndarray:
    """What the input's PSNR is measured on (dual-pixel: the combined view)."""
    if degraded.shape[-1] == 6:
        return degradations.combined_view(degraded)
    return degraded


def held_out_photos(folder: Path) -> list[tuple[str, np.ndarray]]:
    """The held-out photos of ``folder`` as (name, float32 RGB) pairs, gray ones made RGB."""
    photos = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
            image = to_float(read_image(path).pixels)
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            photos.append((path.name, image[..., :3].astype(np.float32)))
    if not photos:
        raise SystemExit(f"{folder}: no photos (run python scripts/prepare_photos.py)")
    return photos


class Bm3d:
    """CBM3D / BM3D told the true sigma, cached on disk by photo, seed and sigma."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.cache: dict[str, float] = (
            json.loads(BM3D_CACHE.read_text()) if BM3D_CACHE.is_file() else {}
        )

    def psnr(self, key: str, noisy: np.ndarray, clean: np.ndarray, sigma: float) -> float | None:
        if not self.enabled:
            return None
        if key not in self.cache:
            import bm3d

            if noisy.shape[-1] == 3:
                out = bm3d.bm3d_rgb(noisy, sigma / 255)
            else:
                out = bm3d.bm3d(noisy[..., 0], sigma / 255)[..., None]
            self.cache[key] = _psnr(np.asarray(out, np.float32), clean, False)
            write_json(BM3D_CACHE, dict(sorted(self.cache.items())), indent=1)
        return self.cache[key]


def evaluate_task(
    task: str,
    model: Any,
    photos: list[tuple[str, np.ndarray]],
    seed: int,
    bm3d: Bm3d,
    options: dict[str, Any],
    clean_photo: bool = True,
    draws: int = 1,
) -> dict[str, Any]:
    """Every case of ``task`` on every photo, ``draws`` degradations each: mean PSNRs, the
    standard error of ours' margin, targets, pass/fail; the clean-photo row last (unless
    ``clean_photo`` is false: it does not depend on the seed)."""
    gray = task == "gaussian-gray-denoising"
    rows = []
    for c, case in enumerate(cases(task)):
        inputs, ours, baseline = [], [], []
        for p, (name, photo) in enumerate(photos):
            clean = to_gray(photo) if gray else photo
            digest = hashlib.sha1(clean.tobytes()).hexdigest()[:12]
            for draw in range(draws):
                rng = np.random.default_rng(_draw_seed(seed, c, p, draw))
                degraded = case.degrade(clean, rng)
                restored = restore(degraded, model, **options)
                inputs.append(_psnr(_input_view(task, degraded), clean, case.y_channel))
                ours.append(_psnr(restored, clean, case.y_channel))
                if case.sigma is not None and case.target.startswith("baseline"):
                    key = f"{task}|{name}|{digest}|{seed}|{c}|{case.sigma}"
                    key += f"|{draw}" if draw else ""
                    value = bm3d.psnr(key, degraded, clean, case.sigma)
                    if value is not None:
                        baseline.append(value)
        reference = baseline if baseline and case.target.startswith("baseline") else inputs
        row = {
            "case": case.name,
            "input": float(np.mean(inputs)),
            "ours": float(np.mean(ours)),
            "ours_se": _standard_error(np.subtract(ours, reference)),
            "samples": len(ours),
            "baseline_name": ("CBM3D" if not gray else "BM3D") if baseline else None,
            "baseline": float(np.mean(baseline)) if baseline else None,
            "target": case.target,
            "mild": case.mild,
        }
        row["pass"] = passes(row)
        rows.append(row)
    if not clean_photo:
        return {"cases": rows}
    clean = [
        _psnr(_restore_clean(task, photo, model, options), to_gray(photo) if gray else photo, False)
        for _, photo in photos
    ]
    rows.append(
        {
            "case": "clean photo",
            "input": None,
            "ours": float(np.mean(clean)),
            "ours_se": None,
            "samples": len(clean),
            "baseline_name": None,
            "baseline": None,
            "target": ">=40",
            "mild": False,
            "pass": bool(np.mean(clean) >= 40),
        }
    )
    return {"cases": rows}


def _draw_seed(seed: int, case: int, photo: int, draw: int) -> list[int]:
    """The seed of one degradation; the first draw's is the one runs of a single draw used."""
    return [seed, case, photo] if draw == 0 else [seed, case, photo, draw]


def _standard_error(margins: np.ndarray) -> float | None:
    """The standard error of the mean of ``margins`` (None for a single sample)."""
    if len(margins) < 2:
        return None
    return float(np.std(margins, ddof=1) / np.sqrt(len(margins)))


def _restore_clean(task: str, photo: np.ndarray, model: Any, options: dict[str, Any]):
    """A clean photo through the model (dual-pixel: two identical, in-focus views)."""
    clean = to_gray(photo) if task == "gaussian-gray-denoising" else photo
    return restore(degradations.undegraded(task, clean), model, **options)


def passes(row: dict[str, Any]) -> bool | None:
    """Whether a result row meets its target (mild cases: at most 0.5 dB below the input);
    None if it has none."""
    if row["mild"]:
        return row["ours"] >= row["input"] - 0.5
    target = row["target"]
    if not target:
        return None
    reference, _, gain = target.partition("+")
    base = row["input"] if reference == "input" else row["baseline"]
    return None if base is None else row["ours"] >= base + float(gain)


# --------------------------------------------------------------------------- output


def _table(results: dict[str, Any]) -> str:
    lines = [f"{'task':<31}{'case':<20}{'input':>8}{'baseline':>16}{'ours':>14}  target"]
    for task, result in results.items():
        for row in result["cases"]:
            base = (
                f"{row['baseline_name']} {row['baseline']:.2f}"
                if row["baseline"] is not None
                else "-"
            )
            mark = {True: "pass", False: "FAIL", None: ""}[row["pass"]]
            target = "input-0.5" if row["mild"] else row["target"]
            lines.append(
                f"{task:<31}{row['case']:<20}{_number(row['input']):>8}{base:>16}{_ours(row):>14}"
                f"  {target} {mark}".rstrip()
            )
            task = ""
    return "\n".join(lines)


def markdown_table() -> str:
    """README's "Where they stand" table: the numbers ``--write-package`` recorded in the
    package, with each model's training iterations, CPU hours and test-time default."""
    from restormer.shipped import QUALITY_FILE, shipped_models

    measured = json.loads(QUALITY_FILE.read_text())["tasks"] if QUALITY_FILE.is_file() else {}
    lines = [
        "| task | iterations | CPU h | GPU min | default | case | input | baseline | ours ± s.e. "
        "| target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, model in shipped_models().items():
        if model is None or task not in measured:
            continue
        lead = (
            f"`{task}` | {model.training.iterations:,} | {model.training.hours:.1f} | "
            f"{model.training.gpu_minutes_cell()} | {model.defaults.describe()}"
        )
        for row in measured[task]["cases"]:
            base = (
                f"{row['baseline_name']} {row['baseline']:.2f}"
                if row["baseline"] is not None
                else "-"
            )
            target = "input-0.5" if row["mild"] else row["target"]
            mark = {True: " met", False: " **not met**", None: ""}[row["pass"]]
            lines.append(
                f"| {lead} | {row['case']} | {_number(row['input'])} | {base} | "
                f"{_ours(row)} | {target}{mark} |"
            )
            lead = " | | | | "
    return "\n".join(lines)


def _test_time(model: Any, options: dict[str, Any]) -> str:
    """The test-time options the run used: ``TLC 192``, ``x8``, ``x4 flips``, both or ``-``."""
    window = options.get("tlc", model.local_attention.window if model.local_attention else 0)
    ensemble = options.get("ensemble", model.self_ensemble)
    transforms = getattr(model, "ensemble_transforms", None)
    return RestoreDefaults(tlc=window, ensemble=ensemble, ensemble_transforms=transforms).describe()


def _ours(row: dict[str, Any]) -> str:
    """Ours' mean PSNR, with the standard error of its margin where there is one."""
    se = row.get("ours_se")
    return f"{row['ours']:.2f}" + ("" if se is None else f" ±{se:.2f}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT / "datasets" / "photos" / "val")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--weights", nargs="+", default=[], metavar="TASK=FILE")
    parser.add_argument("--ensemble", action="store_true", help="x8 self-ensemble")
    parser.add_argument("--tlc", type=int, default=None, help="TLC window (pixels; 0: off)")
    parser.add_argument("--no-baselines", action="store_true", help="skip BM3D")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--draws", type=int, default=6, help="degradations per photo and case")
    parser.add_argument("--name", default="")
    parser.add_argument("--write-package", action="store_true")
    parser.add_argument(
        "--markdown", action="store_true", help="print README's table of the package's numbers"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown_table())
        return
    if args.draws < 1:
        parser.error(f"--draws must be 1 or more, not {args.draws}")

    weights = dict(item.split("=", 1) for item in args.weights)
    photos = held_out_photos(args.photos)
    bm3d = Bm3d(enabled=not args.no_baselines)
    options: dict[str, Any] = {}  # unset: each model's own defaults (load_model)
    if args.ensemble:
        options["ensemble"] = True
    if args.tlc is not None:
        options["tlc"] = args.tlc
    command = " ".join(["python", "benchmarks/quality.py", *sys.argv[1:]])
    results: dict[str, Any] = {}
    for task in args.tasks:
        source = weights.get(task, task)
        try:
            model = load_model(source)
        except Exception as e:  # a task without a model is reported, the others measured
            print(f"{task}: skipped ({e})", file=sys.stderr)
            continue
        started = time.perf_counter()
        results[task] = evaluate_task(
            task, model, photos, args.seed, bm3d, options, draws=args.draws
        )
        results[task]["command"] = command
        results[task]["weights"] = str(source)
        results[task]["draws"] = args.draws
        results[task]["test_time"] = _test_time(model, options)
        results[task]["seconds"] = round(time.perf_counter() - started, 1)
        print(f"{task}: {results[task]['seconds']} s", file=sys.stderr, flush=True)
    print(_table(results))
    report = {
        "command": command,
        "photos": [name for name, _ in photos],
        "seed": args.seed,
        "draws": args.draws,
        "options": options,
        "tasks": results,
    }
    out = result_path("quality", args.name)
    _write_merged(out, report)
    print(f"wrote {out.relative_to(ROOT)}")
    if args.write_package:
        from restormer.shipped import QUALITY_FILE

        QUALITY_FILE.parent.mkdir(exist_ok=True)
        _write_merged(QUALITY_FILE, report)
        print(f"wrote {QUALITY_FILE.relative_to(ROOT)}")


def _write_merged(path: Path, report: dict[str, Any]) -> None:
    """Write ``report``, keeping the tasks of an earlier report at ``path`` that this run did
    not measure (each task records its own command), in the order of the seven tasks."""
    earlier = json.loads(path.read_text()).get("tasks", {}) if path.is_file() else {}
    merged = {**earlier, **report["tasks"]}
    report = {**report, "tasks": {task: merged[task] for task in TASKS if task in merged}}
    write_json(path, report, indent=1)


if __name__ == "__main__":
    main()
