"""``restormer models``: the shipped models, how they were made and how good they are."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from restormer.cli.common import app, out


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the shipped models: task, size, training, held-out quality against baselines."""
    from restormer.shipped import quality_results, shipped_models

    shipped = shipped_models()
    quality = quality_results()
    if as_json:
        rows = {
            task: None
            if model is None
            else {
                "file": model.path.name,
                "parameters": model.parameters,
                "config": model.config,
                "training": model.training.__dict__,
                "restore_defaults": model.defaults.__dict__,
                "quality": quality.get(task),
            }
            for task, model in shipped.items()
        }
        out.print_json(json.dumps(rows))
        return
    table = Table(title="Shipped models: held-out photos, fresh degradations, PSNR in dB")
    table.add_column("task", min_width=10, overflow="fold")
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("iters", justify="right", no_wrap=True)
    table.add_column("CPU h", justify="right", no_wrap=True)
    table.add_column("GPU min", justify="right", no_wrap=True)
    table.add_column("default", no_wrap=True)
    table.add_column("case", min_width=12)
    table.add_column("input", justify="right", no_wrap=True)
    table.add_column("baseline", justify="right", no_wrap=True)
    table.add_column("ours", justify="right", no_wrap=True)
    table.add_column("target", no_wrap=True)
    notes = []
    for task, model in shipped.items():
        if model is None:
            table.add_row(task, "-", "-", "-", "-", "", "not shipped", "", "", "", "")
            continue
        record = model.training
        facts = [
            task,
            f"{model.parameters / 1e6:.2f} M",
            f"{record.iterations:,}",
            f"{record.hours:.1f}",
            record.gpu_minutes_cell(),
            model.defaults.describe(),
        ]
        cases = (quality.get(task) or {}).get("cases") or [None]
        for case in cases:
            table.add_row(*facts, *_case_cells(case))
            facts = [""] * len(facts)
        if record.command:
            notes.append(
                f"{task}: {record.command}" + (f"  ({record.data})" if record.data else "")
            )
    # Piped output has no width to respect: keep every row on one line (rich assumes 80).
    wide = Console(width=200, highlight=False, soft_wrap=True)
    (out if out.is_terminal else wide).print(table)
    if notes:
        out.print("Reproduce (command, training data):\n" + "\n".join(f"  {n}" for n in notes))


def _case_cells(case: dict[str, Any] | None) -> list[str]:
    """case, input, baseline, ours, target: ``sigma 25 | 20.17 | CBM3D 30.12 | 30.70 |
    baseline+0.5 no``."""
    if case is None:
        return ["not measured", "", "", "", ""]
    baseline = case.get("baseline")
    base = (
        f"{case.get('baseline_name', '')} {baseline:.2f}".strip() if baseline is not None else "-"
    )
    given = "-" if case.get("input") is None else f"{case['input']:.2f}"
    target = "input-0.5" if case.get("mild") else str(case.get("target") or "")
    mark = {True: " met", False: " not met"}.get(case.get("pass"), "")  # type: ignore[arg-type]
    return [str(case["case"]), given, base, f"{case['ours']:.2f}", f"{target}{mark}".strip()]
