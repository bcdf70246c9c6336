"""``restormer info`` and ``restormer convert``: what a weights file holds, other formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from restormer.cli.common import app, fail, out


@app.command()
def info(
    weights: Annotated[Path, typer.Argument(help="Weights file (.pth or .safetensors).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the configuration inferred from a weights file, its size and its cost."""
    from restormer.weights import WeightsError, describe

    try:
        facts = describe(weights)
    except WeightsError as e:
        fail(str(e))
    macs = facts.pop("macs_256")
    if as_json:
        facts["gmacs_256"] = {
            "convolutions": macs.convolutions / 1e9,
            "attention": macs.attention / 1e9,
        }
        out.print_json(json.dumps(facts))
        return
    cfg = facts["config"]
    layout = facts["official_layout"]
    lines = [
        f"file            {facts['file']}",
        f"format          {facts['format']} ({facts['dtype']})",
        *(f"  {k:<22}{v}" for k, v in cfg.items()),
        f"parameters      {facts['parameters']:,} ({facts['parameters'] / 1e6:.2f} M)",
        f"GMACs @256x256  {macs.convolutions / 1e9:.2f} convolutions (as the paper counts) "
        f"+ {macs.attention / 1e9:.2f} attention = {macs.total / 1e9:.2f}",
        "official layout "
        + (
            f"{layout} (as {', '.join(facts['official_checkpoints'])})"
            if layout
            else "none (a custom configuration)"
        ),
    ]
    lines += [f"metadata        {k} = {v}" for k, v in facts["metadata"].items()]
    out.print("\n".join(lines))


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="Input weights (.pth or .safetensors).")],
    target: Annotated[
        Path, typer.Argument(help="Output: .safetensors, or .pth (official format).")
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output.")
    ] = False,
) -> None:
    """Convert weights: official .pth <-> .safetensors with the configuration as metadata."""
    from restormer.weights import WeightsError, load_model, save_weights

    try:
        model = load_model(source)
        save_weights(model, target, overwrite=overwrite)
    except WeightsError as e:
        fail(str(e))
    out.print(f"wrote {target}")
