"""Loading anything a user brings, safely; inferring the configuration; converting."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from restormer.model import Restormer, RestormerConfig
from restormer.weights import (
    OFFICIAL_CHECKPOINTS,
    WeightsError,
    count_macs,
    describe,
    infer_config,
    load_model,
    read_checkpoint,
    save_weights,
)

from .conftest import require_reference, tiny_model


def _shapes_state_dict(layout: str) -> dict[str, torch.Tensor]:
    """An uninitialised state dict with exactly the official layout's shapes."""
    ref = json.loads((require_reference() / f"state_dict_shapes/{layout}.json").read_text())
    return {key: torch.empty(shape) for key, shape, _ in ref}


def test_all_13_official_checkpoints_infer_to_their_constructor() -> None:
    configs = json.loads((require_reference() / "model_configs.json").read_text())
    assert set(configs) == set(OFFICIAL_CHECKPOINTS)
    for name, entry in configs.items():
        layout = Path(entry["state_dict_layout"]).stem
        inferred = infer_config(_shapes_state_dict(layout), name)
        assert inferred == RestormerConfig(**entry["constructor"]), name
        assert inferred.to_dict() == entry["constructor"], name
        assert OFFICIAL_CHECKPOINTS[name] == inferred


@pytest.mark.parametrize(
    "overrides",
    [
        {"dim": 24, "num_blocks": (2, 3, 3, 4), "num_refinement_blocks": 2},
        {"dim": 16, "num_blocks": (1, 2, 2, 3), "heads": (1, 2, 2, 4), "ffn_expansion_factor": 2.0},
        {"dim": 32, "ffn_expansion_factor": 3.0, "bias": True, "LayerNorm_type": "BiasFree"},
        {"dim": 8, "ffn_expansion_factor": 1.5, "num_refinement_blocks": 0, "out_channels": 1},
        {"inp_channels": 6, "dual_pixel_task": True, "dim": 16},
    ],
)
def test_inference_of_other_configurations(overrides: dict) -> None:
    config = RestormerConfig(**overrides)
    with torch.device("meta"):
        sd = Restormer(**config.__dict__).state_dict()
    assert infer_config(sd) == config


WRAPPERS = {
    "params": lambda sd: {"params": sd},
    "params_ema": lambda sd: {"params_ema": sd, "iter": 5},
    "state_dict": lambda sd: {"state_dict": sd},
    "bare": lambda sd: sd,
    "dataparallel": lambda sd: {"params": {f"module.{k}": v for k, v in sd.items()}},
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_load_model_from_pth_variants(tmp_path: Path, wrapper: str) -> None:
    model = tiny_model(seed=1, LayerNorm_type="BiasFree")
    path = tmp_path / "w.pth"
    torch.save(WRAPPERS[wrapper](model.state_dict()), path)
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    x = torch.rand(1, 3, 24, 16)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_safetensors_and_pth_round_trip(tmp_path: Path) -> None:
    model = tiny_model(seed=2, bias=True)
    st = save_weights(model, tmp_path / "w.safetensors")
    pth = save_weights(load_model(st), tmp_path / "back.pth")
    obj = torch.load(pth, weights_only=True)
    assert list(obj) == ["params"]
    assert list(obj["params"]) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(obj["params"][k], v)
    assert read_checkpoint(st).metadata["restormer_config"]
    assert load_model(pth).config == model.config


def test_safetensors_metadata_keeps_the_exact_ffn_factor(tmp_path: Path) -> None:
    model = tiny_model(ffn_expansion_factor=2.667)  # same shapes as 2.66 at these widths
    path = save_weights(model, tmp_path / "w.safetensors")
    assert load_model(path).config.ffn_expansion_factor == 2.667


def test_counts_paper_gmacs() -> None:
    macs = count_macs(RestormerConfig(), 256, 256)
    assert round(macs.convolutions / 1e9, 2) == 140.99  # the paper's 140.99 GMACs
    assert macs.total > macs.convolutions


def test_describe_names_the_official_layout(tmp_path: Path) -> None:
    with torch.device("meta"):
        sd = Restormer(LayerNorm_type="BiasFree", inp_channels=1, out_channels=1).state_dict()
    path = tmp_path / "gray.pth"
    torch.save({"params": {k: torch.zeros(v.shape) for k, v in sd.items()}}, path)
    info = describe(path)
    assert info["official_layout"] == "biasfree_gray"
    assert "gaussian_gray_denoising_blind.pth" in info["official_checkpoints"]
    assert info["parameters"] == 26_109_076


# ----------------------------------------------------------------------------- bad files


def _error(path: Path | str) -> str:
    with pytest.raises(WeightsError) as e:
        load_model(path)
    message = str(e.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in _error(tmp_path / "nope.pth")


def test_directory(tmp_path: Path) -> None:
    assert "directory" in _error(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.pth").write_bytes(b"")
    assert "empty" in _error(tmp_path / "e.pth")


def test_text_file(tmp_path: Path) -> None:
    (tmp_path / "t.pth").write_text("hello, I am not weights\n")
    assert "not a weights file" in _error(tmp_path / "t.pth")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    path = save_weights(tiny_model(), tmp_path / f"w{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _error(path)


def test_not_a_restormer_checkpoint(tmp_path: Path) -> None:
    torch.save({"params": {"conv1.weight": torch.zeros(3, 3, 3, 3)}}, tmp_path / "x.pth")
    message = _error(tmp_path / "x.pth")
    assert "not a Restormer checkpoint" in message and "patch_embed.proj.weight" in message


def test_unexpected_and_missing_keys(tmp_path: Path) -> None:
    sd = tiny_model().state_dict()
    sd["extra.weight"] = torch.zeros(1)
    del sd["output.weight"]
    sd["output.weight"] = torch.zeros(3, 16, 3, 3)  # back, but after the extra key
    torch.save(sd, tmp_path / "x.pth")
    assert "unexpected keys 'extra.weight'" in _error(tmp_path / "x.pth")
    del sd["extra.weight"]
    del sd["encoder_level1.0.attn.qkv_dwconv.weight"]
    torch.save(sd, tmp_path / "y.pth")
    assert "missing keys 'encoder_level1.0.attn.qkv_dwconv.weight'" in _error(tmp_path / "y.pth")


def test_shape_mismatch(tmp_path: Path) -> None:
    sd = tiny_model().state_dict()
    sd["encoder_level2.0.attn.project_out.weight"] = torch.zeros(16, 16, 3, 3)
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "x.safetensors")
    assert "shape mismatch at 'encoder_level2.0.attn.project_out.weight'" in _error(
        tmp_path / "x.safetensors"
    )


class _Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {_Payload.marker}",))

    marker = ""


def test_pickled_code_is_never_run(tmp_path: Path) -> None:
    _Payload.marker = str(tmp_path / "pwned")
    with open(tmp_path / "evil.pth", "wb") as f:
        torch.save({"params": tiny_model().state_dict(), "x": _Payload()}, f, pickle_module=pickle)
    assert "refused" in _error(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()


def test_task_name_without_shipped_model(shipped_dir: Path) -> None:
    with pytest.raises(WeightsError, match="no shipped model"):
        load_model("deraining")


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"keep me")
    with pytest.raises(WeightsError, match="already exists"):
        save_weights(tiny_model(), path)
    assert path.read_bytes() == b"keep me"
    save_weights(tiny_model(), path, overwrite=True)
    assert load_model(path).config.dim == 8
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left


def test_saved_weights_have_normal_file_permissions(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    path = save_weights(tiny_model(seed=0), tmp_path / "w.safetensors")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left


def test_precision_bf16_rounds_the_weights_and_rejects_unknown_names(tmp_path: Path) -> None:
    from restormer.weights import native_bfloat16

    path = save_weights(tiny_model(), tmp_path / "w.safetensors")
    model = load_model(path, precision="bf16")
    weight = next(model.parameters())
    assert weight.dtype == (torch.bfloat16 if native_bfloat16("cpu") else torch.float32)
    assert torch.equal(weight.float(), weight.bfloat16().float())  # representable in bf16
    with pytest.raises(WeightsError, match="precision 'fp8'"):
        load_model(path, precision="fp8")
