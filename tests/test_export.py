"""ONNX export: the graph equals the model at any size, and the command fails cleanly."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from restormer.cli import app
from restormer.export import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    ExportError,
    PaddedModel,
    export_onnx,
)
from restormer.inference import restore
from restormer.model import Restormer
from restormer.weights import load_model, save_weights

from .conftest import tiny_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

runner = CliRunner()


def _session(path: Path):  # type: ignore[no-untyped-def]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # tiny graphs on shared cores: threads only cost
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    return _session(path).run(["output"], {"input": x.numpy()})[0]


def _reference(model: Restormer, x: torch.Tensor) -> np.ndarray:
    """The official test scripts' way: reflect-pad to a multiple of 8, run, crop."""
    h, w = x.shape[-2:]
    with torch.no_grad():
        return model(F.pad(x, (0, -w % 8, 0, -h % 8), mode="reflect"))[..., :h, :w].numpy()


def _images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


def _run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    text = result.output
    assert "Traceback" not in text
    return result.exit_code, text


def _one_line(text: str) -> bool:
    return len([line for line in text.splitlines() if line.strip()]) == 1


@pytest.fixture(scope="module")
def rgb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Restormer, Path, Path]:
    """A tiny RGB model, its weights file and its ONNX export (default opset)."""
    root = tmp_path_factory.mktemp("export")
    model = tiny_model(seed=3)
    weights = save_weights(model, root / "rgb.safetensors")
    return model, weights, export_onnx(model, root / "rgb.onnx")


# --------------------------------------------------------------------------- the graph


@pytest.mark.parametrize("size", [(24, 40), (37, 50)])
def test_onnx_equals_the_model_at_any_size(
    rgb: tuple[Restormer, Path, Path], size: tuple[int, int]
) -> None:
    model, _, path = rgb
    x = _images(2, 3, *size)
    out = _run_onnx(path, x)
    assert out.shape == (2, 3, *size)
    assert _max_diff(out, _reference(model, x)) < 1e-4


def test_onnx_pads_as_restore_does_even_below_the_pad(rgb: tuple[Restormer, Path, Path]) -> None:
    """Where a pad exceeds the image (3 x 5, 1 x 1) one reflection is not enough."""
    model, _, path = rgb
    for size in [(3, 5), (1, 1), (37, 50)]:
        x = _images(2, 3, *size, seed=1)
        expected = restore(x.permute(0, 2, 3, 1).numpy(), model).transpose(0, 3, 1, 2)
        assert _max_diff(np.clip(_run_onnx(path, x), 0, 1), expected) < 1e-4, size


def test_graph_names_axes_and_metadata(rgb: tuple[Restormer, Path, Path]) -> None:
    model, _, path = rgb
    proto = onnx.load(str(path))
    dims = [
        [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in (proto.graph.input[0], proto.graph.output[0])
    ]
    assert [proto.graph.input[0].name, proto.graph.output[0].name] == ["input", "output"]
    assert dims == [["batch", 3, "height", "width"]] * 2
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {o.domain: o.version for o in proto.opset_import}[""] == DEFAULT_OPSET
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["restormer_config"]) == model.config.to_dict()


@pytest.mark.parametrize("size", [*range(1, 26), 33, 40])
def test_padded_model_pads_like_numpy_reflect(size: int) -> None:
    """Eager run of the exported wrapper with an identity model: padding, then the crop."""
    seen: list[torch.Tensor] = []

    class Record(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x)
            return x

    x = torch.arange(size * 3, dtype=torch.float32).reshape(1, 1, size, 3)
    assert torch.equal(PaddedModel(Record())(x), x)
    padded = np.pad(x[0, 0].numpy(), ((0, -size % 8), (0, 5)), mode="reflect")
    np.testing.assert_array_equal(seen[0][0, 0].numpy(), padded)


def test_gray_model_in_float64_exports_as_float32(tmp_path: Path) -> None:
    model = tiny_model(seed=4, inp_channels=1, out_channels=1)
    double = copy.deepcopy(model).double()
    export_onnx(double, tmp_path / "gray.onnx")
    assert next(double.parameters()).dtype == torch.float64  # the caller's model is untouched
    x = _images(2, 1, 37, 50)
    assert _max_diff(_run_onnx(tmp_path / "gray.onnx", x), _reference(model, x)) < 1e-4


def test_dual_pixel_model_exports_the_plain_forward_even_from_inference_mode(
    tmp_path: Path,
) -> None:
    """The traced forward runs with autograd on, so paths taken without it stay out."""
    model = tiny_model(seed=5, inp_channels=6, dual_pixel_task=True)
    modes: list[tuple[bool, bool]] = []
    hook = model.register_forward_pre_hook(
        lambda *_: modes.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
    )
    with torch.inference_mode():
        export_onnx(model, tmp_path / "dual.onnx")
    hook.remove()
    assert modes and set(modes) == {(True, False)}
    x = _images(2, 6, 37, 50)
    out = _run_onnx(tmp_path / "dual.onnx", x)
    assert out.shape == (2, 3, 37, 50)
    assert _max_diff(out, _reference(model, x)) < 1e-4


def test_library_refusals(tmp_path: Path, rgb: tuple[Restormer, Path, Path]) -> None:
    model, _, _ = rgb
    (tmp_path / "taken.onnx").write_bytes(b"keep")
    with pytest.raises(ExportError, match="already exists"):
        export_onnx(model, tmp_path / "taken.onnx")
    with pytest.raises(ExportError, match=f"between {MIN_OPSET} and {MAX_OPSET}"):
        export_onnx(model, tmp_path / "a.onnx", opset=MIN_OPSET - 1)
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx(model, tmp_path / "missing" / "a.onnx")
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(model, tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.onnx"]
    assert (tmp_path / "taken.onnx").read_bytes() == b"keep"


# --------------------------------------------------------------------------- the command


def test_export_command_end_to_end(tmp_path: Path, rgb: tuple[Restormer, Path, Path]) -> None:
    _, weights, _ = rgb
    target = tmp_path / "out.onnx"
    code, text = _run("export", "--onnx", target, weights, "--opset", MIN_OPSET)
    assert code == 0, text
    assert "wrote" in text and f"opset {MIN_OPSET}" in text
    x = _images(2, 3, 37, 50)
    assert _max_diff(_run_onnx(target, x), _reference(load_model(weights), x)) < 1e-4

    before = target.read_bytes()
    code, text = _run("export", "--onnx", target, weights)
    assert code != 0 and "already exists" in text and _one_line(text)
    assert target.read_bytes() == before

    code, text = _run("export", "--onnx", target, weights, "--opset", MAX_OPSET, "--overwrite")
    assert code == 0, text
    proto = onnx.load(str(target))
    assert {o.domain: o.version for o in proto.opset_import}[""] == MAX_OPSET
    assert _max_diff(_run_onnx(target, x), _reference(load_model(weights), x)) < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]  # no temporary left


@pytest.mark.parametrize(
    ("weights", "args", "expected"),
    [
        ("{tmp}/nothing.pth", [], "no such file"),
        ("{tmp}/bad.pth", [], "not a weights file"),
        ("{rgb}", ["--opset", "7"], f"between {MIN_OPSET} and {MAX_OPSET}"),
        ("{rgb}", ["--onnx", "{tmp}/no/such/folder.onnx"], "does not exist"),
    ],
    ids=["missing-weights", "bad-weights", "bad-opset", "missing-folder"],
)
def test_export_command_errors(
    tmp_path: Path,
    rgb: tuple[Restormer, Path, Path],
    weights: str,
    args: list[str],
    expected: str,
) -> None:
    (tmp_path / "bad.pth").write_bytes(b"this is not a checkpoint")
    fill = {"tmp": tmp_path, "rgb": rgb[1]}
    args = [a.format(**fill) for a in args]
    onnx_args = [] if "--onnx" in args else ["--onnx", str(tmp_path / "out.onnx")]
    code, text = _run("export", *onnx_args, weights.format(**fill), *args)
    assert code != 0 and expected in text and _one_line(text), text
    assert not (tmp_path / "out.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth"]


def test_export_command_without_onnx(
    tmp_path: Path, rgb: tuple[Restormer, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    code, text = _run("export", "--onnx", tmp_path / "out.onnx", rgb[1])
    assert code != 0 and _one_line(text)
    assert "pip install 'restormer[onnx]'" in text
    assert not any(tmp_path.iterdir())
