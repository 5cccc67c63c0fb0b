"""The fast paths a GPU takes (grouped step, bf16, CUDA graphs, torch.compile), each against the plain eager step.

They run on FRUITGAN_TEST_DEVICE (default cpu; benchmarks/gpu_check.py sets cuda on a GPU machine), so CI on a
CPU runs the same assertions and they cannot rot. Random images and noise are synthetic test inputs.
"""
import os
import warnings

import pytest
import torch

import gan_model as gm
from fruitgan.learn import grouped as gg

DEVICE = torch.device(os.environ.get("FRUITGAN_TEST_DEVICE", "cpu"))
SMALL = dict(g_channels=16, d_channels=8, dropout=0.0, diff_augment="none")   # no random draws inside a step
FRUITS, BATCH, SIZE, STEPS = 2, 4, 28, 3
FP32_LOSS_TOL = 1e-3        # fp32 paths that add in another order (grouped convolutions, fused kernels)
BF16_LOSS_TOL = 0.05        # bf16 keeps 8 bits of mantissa: losses near 0.7 move by a few hundredths


def test_the_requested_device_is_there():
    assert DEVICE.type == "cpu" or torch.cuda.is_available(), f"FRUITGAN_TEST_DEVICE={DEVICE} but no GPU"


def _inputs(steps=STEPS, seed=7):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(FRUITS, BATCH, 1, SIZE, SIZE, generator=gen) * 2 - 1,
             torch.randn(FRUITS, BATCH, gm.NOISE_DIM, generator=gen)) for _ in range(steps)]


def _losses(group) -> list:
    out = []
    for real, noise in _inputs():
        step = group.train_step(real.to(DEVICE), noise.to(DEVICE))
        out.append(torch.stack([step["d_loss"], step["g_loss"]]).float().cpu())
    return out


def _group(**kwargs):
    cfg = gm.GANConfig(resolution=SIZE, **SMALL)
    return gg.GroupedGAN(cfg, FRUITS, device=DEVICE, init_seeds=[1, 2], **kwargs)


def _max_gap(a: list, b: list) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def test_grouped_step_equals_each_fruit_stepped_alone():
    """The grouped layout (one batched network for all fruits: CUDA's path) against gan_model.train_step."""
    group = _group(layout="grouped")
    gans = []
    for i in range(FRUITS):
        gan = gm.compile_gan(gm.GANConfig(resolution=SIZE, **SMALL))
        gan.generator.load_state_dict(group.fruit_state_dicts(i)["generator"])
        gan.discriminator.load_state_dict(group.fruit_state_dicts(i)["discriminator"])
        gans.append(gan)
    for real, noise in _inputs():
        ref = [gm.train_step(gan, real[i], noise[i]) for i, gan in enumerate(gans)]
        out = group.train_step(real.to(DEVICE), noise.to(DEVICE))
        for i in range(FRUITS):
            assert out["d_loss"][i].item() == pytest.approx(ref[i]["d_loss"], abs=FP32_LOSS_TOL)
            assert out["g_loss"][i].item() == pytest.approx(ref[i]["g_loss"], abs=FP32_LOSS_TOL)


def test_bf16_tracks_fp32():
    bf16, fp32 = _losses(_group(precision="bf16")), _losses(_group(precision="fp32"))
    assert all(torch.isfinite(x).all() for x in bf16)
    assert _max_gap(bf16, fp32) < BF16_LOSS_TOL


def test_cuda_graph_replays_the_eager_step():
    """On CUDA the whole step is captured once and replayed; elsewhere the request runs eagerly, with a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graphed = _group(layout="grouped", cuda_graph=True)
    assert graphed.cuda_graph == (DEVICE.type == "cuda")
    assert graphed.cuda_graph or any("cuda_graph" in str(w.message) for w in caught)
    assert _max_gap(_losses(graphed), _losses(_group(layout="grouped"))) < FP32_LOSS_TOL


def test_compile_matches_eager(monkeypatch):
    """On CUDA with torch.compile's own backend (inductor). On a CPU, inductor's C++ build takes minutes on 2 cores,
    so the same wrapped functions are traced by dynamo and AOT autograd (backend aot_eager) instead: the project's
    compile path and its graph breaks are still exercised, only the kernels are not generated."""
    if DEVICE.type != "cuda":
        real_compile = torch.compile
        monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, **{**kw, "backend": "aot_eager"}))
    compiled = _group(compile=True)
    assert compiled.compile
    assert _max_gap(_losses(compiled), _losses(_group())) < FP32_LOSS_TOL
