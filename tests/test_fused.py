"""The compiled bias-free LayerNorm and GDFN gate: same values and gradients as the eager
ones, used only for training steps, and an eager fallback where compiling fails."""

from __future__ import annotations

import warnings

import pytest
import torch

import restormer.model as model_module
from restormer.fused import (
    _Compiled,
    bias_free_norm,
    compiled_bias_free_norm,
    compiled_gated_gelu,
    gated_gelu,
)
from restormer.model import EPS, GDFN, BiasFreeLayerNorm, Restormer


def _values_and_gradients(norm, x: torch.Tensor, weight: torch.Tensor):
    x = x.clone().requires_grad_(True)
    weight = weight.clone().requires_grad_(True)
    out = norm(x, weight, EPS)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    return out.detach(), x.grad, weight.grad


def test_compiled_norm_matches_the_eager_one() -> None:
    torch.manual_seed(0)
    for channels in (16, 48):  # one compilation for every width (dynamic shapes)
        x = torch.randn(2, 9, 7, channels) * 3 + 1
        weight = torch.rand(channels) + 0.5
        eager = _values_and_gradients(bias_free_norm, x, weight)
        compiled = _values_and_gradients(compiled_bias_free_norm, x, weight)
        for a, b in zip(compiled, eager, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_failed_compilation_warns_once_and_computes_eagerly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_compiler(*args: object, **kwargs: object) -> None:
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore details")

    monkeypatch.setattr(torch, "compile", no_compiler)
    norm = _Compiled(bias_free_norm, "the bias-free LayerNorm")
    x, weight = torch.randn(1, 3, 3, 8), torch.rand(8)
    expected = "LayerNorm failed \\(InvalidCxxCompiler: No working C\\+\\+ compiler found\\); tr"
    with pytest.warns(RuntimeWarning, match=expected):
        first = norm(x, weight, EPS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = norm(x, weight, EPS)
    torch.testing.assert_close(first, bias_free_norm(x, weight, EPS), rtol=0, atol=0)
    torch.testing.assert_close(second, first, rtol=0, atol=0)


def test_only_training_steps_use_the_compiled_norm(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []

    def spy(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        calls.append(True)
        return bias_free_norm(x, weight, eps)

    monkeypatch.setattr(model_module, "compiled_bias_free_norm", spy)
    norm = BiasFreeLayerNorm(8)
    x = torch.randn(1, 4, 4, 8)
    norm.eval()
    norm(x)
    norm.train()
    with torch.no_grad():
        norm(x)
    assert not calls
    norm(x)
    assert calls == [True]


def _gate_values_and_gradient(gate, x: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = gate(x)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape).to(out.dtype)
    (out * weights).sum().backward()
    return out.detach(), x.grad


def test_compiled_gate_matches_the_eager_one() -> None:
    torch.manual_seed(0)
    for hidden in (6, 85):  # one compilation for every width; an odd width as the models have
        x = torch.randn(2, 9, 7, 2 * hidden) * 2
        eager = _gate_values_and_gradient(gated_gelu, x)
        compiled = _gate_values_and_gradient(compiled_gated_gelu, x)
        for a, b in zip(compiled, eager, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_compiled_gate_in_bfloat16_matches_the_eager_one() -> None:
    torch.manual_seed(1)
    x = (torch.randn(1, 5, 6, 24) * 2).bfloat16()
    eager = _gate_values_and_gradient(gated_gelu, x)
    compiled = _gate_values_and_gradient(compiled_gated_gelu, x)
    for a, b in zip(compiled, eager, strict=True):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


def test_only_training_steps_use_the_compiled_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        calls.append(True)
        return gated_gelu(x)

    monkeypatch.setattr(model_module, "compiled_gated_gelu", spy)
    ffn = GDFN(8, 2.66, bias=False)
    x = torch.randn(1, 4, 4, 8)
    ffn.eval()
    expected = ffn(x)
    ffn.train()
    with torch.no_grad():
        ffn(x)
    assert not calls
    torch.testing.assert_close(ffn(x), expected, rtol=0, atol=0)
    assert calls == [True]


def test_the_training_model_traces_as_one_graph_for_torch_compile() -> None:
    """Whole-model compilation (GPU bursts' ``--compile``) sees one graph: the CPU-only paths
    and the separately compiled pieces step aside while dynamo traces."""
    model = Restormer(dim=8, num_blocks=[1, 1, 1, 1], heads=[1, 2, 4, 8], num_refinement_blocks=1)
    explanation = torch._dynamo.explain(model.train())(torch.rand(1, 3, 16, 16))
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)
