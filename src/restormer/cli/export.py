"""``restormer export``: a weights file as an ONNX graph that takes images of any size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from restormer.cli.common import app, fail, load_model_or_fail, out
from restormer.export import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    ExportError,
    check_export,
    export_onnx,
)


@app.command("export")
def export_command(
    weights: Annotated[Path, typer.Argument(help="Weights file (.pth or .safetensors).")],
    onnx: Annotated[
        Path, typer.Option("--onnx", help="Output ONNX file.", show_default=False)
    ] = ...,  # type: ignore[assignment]
    opset: Annotated[
        int | None,
        typer.Option(
            help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default: {DEFAULT_OPSET}).",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output.")
    ] = False,
) -> None:
    """Export weights to ONNX: N x C x H x W float32 in and out, any batch, height and width.

    The graph reflect-pads to a multiple of 8 and crops back, as restormer restore does.
    """
    try:
        # Before the model is loaded: a doomed export fails at once.
        opset = check_export(onnx, opset=opset, overwrite=overwrite)
    except ExportError as e:
        fail(escape(str(e)))  # file names may hold [brackets]
    model = load_model_or_fail(weights, "cpu")
    try:
        export_onnx(model, onnx, opset=opset, overwrite=overwrite)
    except ExportError as e:
        fail(escape(str(e)))
    channels = model.inp_channels
    out.print(f"wrote {escape(str(onnx))} (opset {opset}; input N x {channels} x H x W, any H, W)")
