"""Option files and photo folders for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from restormer.io import write_image
from restormer.model import Restormer

# An official-format option file (as in Denoising/Options/*.yml), shrunk to a tiny model.
OPTIONS = """\
# general settings
name: {name}
model_type: ImageCleanModel
scale: 1
num_gpu: 1
manual_seed: 100

datasets:
  train:
    name: TrainSet
    type: Dataset_GaussianDenoising
    sigma_type: random
    sigma_range: [0, 50]
    in_ch: 3
    dataroot_gt: {photos}
    dataroot_lq: none
    geometric_augs: true
    filename_tmpl: '{{}}'
    io_backend:
      type: disk
    use_shuffle: true
    num_worker_per_gpu: 8
    batch_size_per_gpu: 8
    mini_batch_sizes: [4, 2]
    iters: [4, 4]
    gt_size: 48
    gt_sizes: [32, 48]
    dataset_enlarge_ratio: 1
    prefetch_mode: ~

  val:
    name: ValSet
    type: Dataset_GaussianDenoising
    sigma_test: 25
    in_ch: 3
    dataroot_gt: {val_photos}
    dataroot_lq: none
    io_backend:
      type: disk

network_g:
  type: Restormer
  inp_channels: 3
  out_channels: 3
  dim: 8
  num_blocks: [1, 1, 1, 1]
  num_refinement_blocks: 1
  heads: [1, 1, 2, 2]
  ffn_expansion_factor: 2.66
  bias: False
  LayerNorm_type: BiasFree
  dual_pixel_task: False

path:
  pretrain_network_g: ~
  strict_load_g: true
  resume_state: ~

train:
  total_iter: 8
  warmup_iter: -1
  use_grad_clip: true
  scheduler:
    type: CosineAnnealingRestartCyclicLR
    periods: [3, 5]
    restart_weights: [1, 1]
    eta_mins: [0.0003, 0.000001]
  mixing_augs:
    mixup: true
    mixup_beta: 1.2
    use_identity: true
  optim_g:
    type: AdamW
    lr: !!float 3e-4
    weight_decay: !!float 1e-4
    betas: [0.9, 0.999]
  pixel_opt:
    type: L1Loss
    loss_weight: 1
    reduction: mean

val:
  window_size: 8
  val_freq: !!float 4
  save_img: false
  rgb2bgr: true
  use_image: true
  max_minibatch: 8
  metrics:
    psnr:
      type: calculate_psnr
      crop_border: 0
      test_y_channel: false

logger:
  print_freq: 2
  save_checkpoint_freq: !!float 4
  use_tb_logger: true
  wandb:
    project: ~
    resume_id: ~

dist_params:
  backend: nccl
  port: 29500
"""


def make_photos(folder: Path, count: int, size: tuple[int, int] = (56, 64), seed: int = 0) -> Path:
    """Small smooth-plus-texture RGB PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(count):
        phase = rng.uniform(0, 6, 3)
        img = np.stack([0.5 + 0.4 * np.sin(6 * x + 4 * y + p) for p in phase], axis=2)
        img += rng.normal(0, 0.05, img.shape)
        write_image(folder / f"img_{i:02d}.png", np.clip(img, 0, 1), bit_depth=8)
    return folder


def write_options(tmp: Path, name: str = "tiny", **fields: str) -> Path:
    photos = make_photos(tmp / "photos", 6)
    val = make_photos(tmp / "val_photos", 2, seed=1)
    text = OPTIONS.format(name=name, photos=photos, val_photos=val)
    for key, value in fields.items():
        text = text.replace(key, value)
    path = tmp / f"{name}.yml"
    path.write_text(text)
    return path


SMALL_NETWORK = dict(
    inp_channels=3,
    out_channels=3,
    dim=8,
    num_blocks=[1, 1, 1, 2],
    num_refinement_blocks=1,
    heads=[1, 2, 4, 8],
    ffn_expansion_factor=2.66,
    bias=False,
    LayerNorm_type="BiasFree",
    dual_pixel_task=False,
)
"""A small Restormer configuration for tests that grow a model (deepen, widen)."""


def random_model(config: dict, seed: int = 0) -> Restormer:
    """A model with every weight random, so that a wrong weight mapping shows (zero
    projections would hide one)."""
    torch.manual_seed(seed)
    model = Restormer(**config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model.eval()
