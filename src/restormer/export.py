"""Export a Restormer to ONNX, with the padding of :func:`restormer.restore` inside the graph.

The model itself needs height and width divisible by 8 (three 2x downsamplings). The exported
graph therefore wraps it exactly as inference does: the input is reflect-padded at the
bottom/right to the next multiple of 8 (values as ``np.pad(..., mode="reflect")`` gives them,
also where a pad is larger than the image, as in ``inference._pad_to_multiple``), run, and
cropped back. So any N x C x H x W float32 input works in an ONNX runtime, and the output has
the input's height and width. The output is the model's, unclipped: :func:`restormer.restore`
clips it to [0, 1] afterwards, and a caller who wants the same values should do the same.

Exporter: the TorchScript-based one (``torch.onnx.export(..., dynamo=False)`` with
``dynamic_axes``). Both of torch's exporters give a correct graph for every size, but the
``torch.export``-based one needs the extra ``onnxscript`` package, names the dynamic axes
after internal symbols and, with torch 2.13 on 2 CPU cores, took about 40 s for the tiny
test model where this one takes 3 s. (torch 2.9+ calls the TorchScript exporter legacy;
it is there in every torch this package allows.) Tracing runs in grad mode, outside
inference mode, so the graph is the plain module forward, never a path a forward may take
without gradients.

``onnx`` is an optional dependency: ``pip install 'restormer[onnx]'`` (with ``onnxruntime``
to run the graph).
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from restormer.files import write_atomically

__all__ = [
    "DEFAULT_OPSET",
    "MAX_OPSET",
    "MIN_OPSET",
    "ExportError",
    "PaddedModel",
    "check_export",
    "export_onnx",
]

MULTIPLE = 8  # three 2x downsamplings, as inference.MULTIPLE
MIN_OPSET = 12  # the first with Einsum (MDTA folds attention into the output projection)
MAX_OPSET = 20  # the newest the TorchScript exporter writes
DEFAULT_OPSET = 17  # the first with LayerNormalization; widely supported by runtimes
SAMPLE_SIZE = (27, 45)  # traced input: not multiples of 8, so the padding is exercised
INSTALL_HINT = "pip install 'restormer[onnx]'"


class ExportError(ValueError):
    """An export that cannot be done as asked, with a one-line, user-facing message."""


def check_export(path: str | Path, *, opset: int | None = None, overwrite: bool = False) -> int:
    """Everything that can fail before the export itself: onnx installed, opset, target.

    Returns the opset to use. :func:`export_onnx` calls it too; the CLI calls it first so that
    a doomed export fails before a model is loaded.
    """
    try:
        import onnx  # noqa: F401 (only whether it is there)
    except ImportError:
        raise ExportError(f"ONNX export needs the onnx package: {INSTALL_HINT}") from None
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ExportError(f"opset must be an integer, got {opset!r}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path}: is a directory")
    if not overwrite and os.path.lexists(path):
        raise ExportError(f"{path}: already exists (use --overwrite)")
    if not path.parent.is_dir():
        raise ExportError(f"{path}: the folder {path.parent} does not exist")
    return opset


def export_onnx(
    model: nn.Module, path: str | Path, *, opset: int | None = None, overwrite: bool = False
) -> Path:
    """Write ``model`` as an ONNX graph taking any N x C x H x W float32 image; returns ``path``.

    Input ``"input"``, output ``"output"`` (N x C_out x H x W); batch, height and width are
    dynamic, and the reflect padding to a multiple of 8 and the crop back are in the graph.
    The file is written atomically and an existing one is replaced only with ``overwrite``.
    The model is exported as float32 on the CPU (a copy, where it is elsewhere); ``model``
    itself is not changed. Raises :class:`ExportError` with a one-line message (also for a
    model with TLC switched on: its window grid is Python control flow fixed at trace time).
    """
    opset = check_export(path, opset=opset, overwrite=overwrite)
    if getattr(model, "local_attention", None) is not None:  # its windows depend on the size
        raise ExportError(
            "a model with TLC switched on cannot be exported (set_local_attention(None))"
        )
    path = Path(path)
    payload = _onnx_bytes(_cpu_float32(model), opset)
    try:
        write_atomically(path, payload, overwrite=overwrite)
    except FileExistsError as e:
        raise ExportError(f"{path}: already exists (use --overwrite)") from e
    except OSError as e:
        raise ExportError(f"{path}: cannot write ({e.strerror or e})") from e
    return path


class PaddedModel(nn.Module):
    """``model`` with inference's padding around it: any H x W in, the same H x W out.

    The padding is a gather with reflected indices rather than ``F.pad``: it traces to plain
    ``Range``/``Mod``/``Gather`` nodes with the size as data, so one graph covers every size,
    including images smaller than the pad (where ``F.pad`` cannot reflect in one go).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        x = x.index_select(-2, _reflect_index(height, x.device))
        x = x.index_select(-1, _reflect_index(width, x.device))
        return self.model(x)[..., :height, :width]


def _reflect_index(size: int | Tensor, device: torch.device) -> Tensor:
    """Source index of each position of ``size`` padded to a multiple of 8, reflected.

    Reflection repeated as often as needed is periodic with period ``2 * (size - 1)``;
    a 1-pixel dimension (period 0) is replicated. While tracing for ONNX, ``size`` is a
    0-d tensor, so the arithmetic becomes part of the graph.
    """
    padded = (size + MULTIPLE - 1) // MULTIPLE * MULTIPLE
    period = 2 * (size - 1)
    period = period.clamp(min=1) if isinstance(period, Tensor) else max(period, 1)
    position = torch.arange(padded, device=device)
    folded = position % period
    return torch.where(folded < size, folded, period - folded)


def _cpu_float32(model: nn.Module) -> nn.Module:
    """``model`` itself if it is float32 on the CPU, else a converted copy."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return model
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32)


def _onnx_bytes(model: nn.Module, opset: int) -> bytes:
    """Trace ``model`` with its padding and return the checked ONNX file, metadata added."""
    import onnx

    channels = int(getattr(model, "inp_channels", 3))
    sample = torch.rand(2, channels, *SAMPLE_SIZE, generator=torch.Generator().manual_seed(0))
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    # Grad mode on and inference mode off: the plain forward is what gets traced.
    with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
        # The exporter announces its deprecation, and the tracer warns where the model reads
        # channel counts from shapes (constants of the architecture; sizes stay dynamic, which
        # the tests check at several sizes).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            PaddedModel(model),
            (sample,),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
            opset_version=opset,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = (
        "Restormer: N x C x H x W float32 in [0, 1], any H and W (reflect-padded to a multiple "
        "of 8 inside and cropped back); output unclipped, N x C_out x H x W."
    )
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        onnx.helper.set_model_props(proto, {"restormer_config": json.dumps(config.to_dict())})
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
