"""The fast multi-fruit path must compute, for every fruit, what gan_model's reference step computes.

Random images and noise here are synthetic test inputs (the equivalence does not depend on them).
"""
import io
import warnings

import pytest
import torch

from fruitgan.learn import augment as ga
import gan_model as gm
from fruitgan.learn import grouped as gg
from fruitgan.learn import stacked
SMALL = dict(g_channels=16, d_channels=8)   # narrow networks: same layer plan, fast tests
# gan_model.train_step is the assignment's plain step: no DiffAugment, so the equivalence tests turn it off
# (the default has it on) and dropout too; test_group_layouts_agree_with_diff_augment covers both.
PLAIN = dict(dropout=0.0, diff_augment="none")
FRUITS, BATCH, SIZE, STEPS = 3, 4, 28, 3


@pytest.fixture
def float64():
    """Run in double precision: rounding then cannot hide a real difference (see the fp32 test)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _batches(steps, seed=123):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    return [(torch.rand(FRUITS, BATCH, 1, SIZE, SIZE, generator=gen, dtype=dtype) * 2 - 1,
             torch.randn(FRUITS, BATCH, gm.NOISE_DIM, generator=gen, dtype=dtype)) for _ in range(steps)]


def _reference_and_group(cfg, **kwargs):
    torch.manual_seed(0)
    gans = [gm.compile_gan(cfg) for _ in range(FRUITS)]
    return gans, gg.GroupedGAN.from_compiled(gans, **kwargs)


def _train_both(gans, group, steps):
    """Step every reference GAN alone and the group together on the same real batches and noise."""
    history = []
    for real, noise in _batches(steps):
        ref = [gm.train_step(gan, real[i], noise[i]) for i, gan in enumerate(gans)]
        out = group.train_step(real, noise)
        history.append((ref, {k: v.tolist() for k, v in out.items()}))
    return history


def _differences(gans, group):
    """Plain name -> max |difference| for every weight, BN buffer, EMA weight and Adam moment."""
    diffs = {}
    for i, gan in enumerate(gans):
        mine = group.fruit_state_dicts(i)
        nets = {"generator": gan.generator, "discriminator": gan.discriminator, "ema": gan.ema}
        for kind, net in nets.items():
            if net is None:
                assert mine[kind] is None
                continue
            ref = net.state_dict()
            assert list(mine[kind]) == list(ref)                      # plain state_dict format and order
            for name, t in ref.items():
                diffs[f"{i}/{kind}/{name}"] = (mine[kind][name].double() - t.double()).abs().max().item()
        adam = group.fruit_optimizer_states(i)
        for kind, net, opt in (("generator", gan.generator, gan.g_optimizer),
                               ("discriminator", gan.discriminator, gan.d_optimizer)):
            for name, p in net.named_parameters():
                assert adam[kind][name]["step"] == float(opt.state[p]["step"])
                for moment in ("exp_avg", "exp_avg_sq"):
                    diffs[f"{i}/{kind}/{name}/{moment}"] = (adam[kind][name][moment].double()
                                                           - opt.state[p][moment].double()).abs().max().item()
    return diffs


@pytest.mark.parametrize("layout,channels_last", [("grouped", False), ("loop", False), ("grouped", True),
                                                  ("loop", True)])
def test_group_step_equals_each_fruit_stepped_alone(float64, layout, channels_last):
    # dropout 0: the masks are random and would differ; BN is in train mode as in real training.
    cfg = gm.GANConfig(resolution=SIZE, **PLAIN, ema_decay=0.9, **SMALL)
    gans, group = _reference_and_group(cfg, layout=layout, channels_last=channels_last)
    assert group.layout == layout
    for ref, out in _train_both(gans, group, STEPS):
        for i in range(FRUITS):
            for key, value in ref[i].items():
                assert out[key][i] == pytest.approx(value, abs=1e-9), (i, key)
    diffs = _differences(gans, group)
    assert len(diffs) > 100                                  # weights, buffers, EMA and Adam moments all compared
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < 1e-9, (worst, diffs[worst])


@pytest.mark.parametrize("slope", [0.0, 0.05])
def test_group_step_equals_alone_for_any_leaky_slope(float64, slope):
    # LeakyReLU runs in place only where its backward can (slope > 0); slope 0 takes the copying path.
    cfg = gm.GANConfig(resolution=SIZE, **PLAIN, leaky_slope=slope, **SMALL)
    gans, group = _reference_and_group(cfg, layout="loop")
    _train_both(gans, group, 2)
    assert max(_differences(gans, group).values()) < 1e-9


def test_group_step_in_float32_matches_up_to_rounding():
    # In fp32 both paths round differently (the sub-pixel upsample-conv adds in another order).
    # Adam's first steps move a weight by about lr * sign(gradient), so the rare weight whose
    # gradient is ~0 can land up to 2*lr apart; everything else must agree to 1e-5.
    cfg = gm.GANConfig(resolution=SIZE, **PLAIN, **SMALL)
    gans, group = _reference_and_group(cfg, layout="loop")
    for ref, out in _train_both(gans, group, 2):
        for i in range(FRUITS):
            for key, value in ref[i].items():
                assert out[key][i] == pytest.approx(value, abs=1e-4), (i, key)
    total = off = 0
    for i, gan in enumerate(gans):
        mine = group.fruit_state_dicts(i)
        for kind, net in (("generator", gan.generator), ("discriminator", gan.discriminator)):
            for name, t in net.state_dict().items():
                d = (mine[kind][name].float() - t.float()).abs()
                assert d.max() <= 2 * 2 * cfg.lr + 1e-6, name
                total += d.numel()
                off += int((d > 1e-5).sum())
    assert off / total < 1e-3, (off, total)


def test_group_layouts_agree_with_diff_augment(float64):
    # The trainer's default (DiffAugment and dropout on): both layouts use each fruit's own draws, so the
    # grouped layout (CUDA) and the loop layout (CPU) must train every fruit alike, step for step.
    cfg = gm.GANConfig(resolution=SIZE, dropout=0.25, diff_augment="translation,cutout", **SMALL)
    unaugmented = gm.GANConfig(resolution=SIZE, dropout=0.25, diff_augment="none", **SMALL)
    groups = {}
    for name, c, layout in (("grouped", cfg, "grouped"), ("loop", cfg, "loop"), ("none", unaugmented, "loop")):
        torch.manual_seed(0)                                   # the same starting weights for all three
        groups[name] = gg.GroupedGAN.from_compiled([gm.compile_gan(c) for _ in range(FRUITS)], layout=layout)
    for step, (real, noise) in enumerate(_batches(STEPS)):
        gens = [torch.Generator().manual_seed(100 * step + i) for i in range(FRUITS)]
        random = ga.stack_fruits([ga.draw_step_random(cfg, BATCH, g, "cpu") for g in gens])
        assert set(random) == {"dropout", "shift", "cutout"}
        out = {name: groups[name].train_step(real, noise, random) for name in ("grouped", "loop")}
        groups["none"].train_step(real, noise, {"dropout": random["dropout"]})   # the same dropout masks
        for key in out["loop"]:
            torch.testing.assert_close(out["grouped"][key], out["loop"][key], atol=1e-9, rtol=0)
    for i in range(FRUITS):
        a, b, c = (groups[n].fruit_state_dicts(i)["generator"] for n in ("grouped", "loop", "none"))
        for name in a:
            torch.testing.assert_close(a[name], b[name], atol=1e-9, rtol=0)
        assert (a["fc.weight"] - c["fc.weight"]).abs().max() > 1e-6     # the augmentation changed the training


def test_adam_state_is_imported_from_trained_gans(float64):
    cfg = gm.GANConfig(resolution=SIZE, **PLAIN, **SMALL)
    torch.manual_seed(1)
    gans = [gm.compile_gan(cfg) for _ in range(FRUITS)]
    for real, noise in _batches(1, seed=7):                 # the fruits have trained before grouping
        for i, gan in enumerate(gans):
            gm.train_step(gan, real[i], noise[i])
    group = gg.GroupedGAN.from_compiled(gans)
    _train_both(gans, group, 2)
    diffs = _differences(gans, group)
    assert max(diffs.values()) < 1e-9


def test_generation_in_bounded_passes_draws_what_one_pass_draws(monkeypatch):
    cfg = gm.GANConfig(resolution=32, **SMALL)
    torch.manual_seed(4)
    group = gg.GroupedGAN(cfg, 2)
    noise = torch.randn(2, 7, gm.NOISE_DIM)
    whole, plain = group.generate(noise), gm.Generator(cfg)
    one_pass = gm.generate(plain, noise[0])
    monkeypatch.setattr(gm, "GENERATE_PIXELS", 3 * 2 * 32 * 32)       # 3 images per fruit per pass: 3 passes
    assert gm.generate_batch(32, 2) == 3 and gm.generate_batch(32) == 6 and gm.generate_batch(4096) == 1
    torch.testing.assert_close(group.generate(noise), whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(gm.generate(plain, noise[0]), one_pass, atol=1e-6, rtol=0)
    assert gm.generate(plain, noise[0, :0]).shape == (0, 1, 32, 32)


def test_exported_weights_load_into_plain_networks():
    cfg = gm.GANConfig(resolution=32, ema_decay=0.5, **SMALL)
    torch.manual_seed(2)
    group = gg.GroupedGAN(cfg, 2)
    group.train_step(torch.rand(2, 4, 1, 32, 32) * 2 - 1, torch.randn(2, 4, gm.NOISE_DIM))
    noise = torch.randn(2, 5, gm.NOISE_DIM)
    images = group.generate(noise, use_ema=False)
    ema_images = group.generate(noise)
    assert images.shape == (2, 5, 1, 32, 32) and not images.requires_grad
    assert images.abs().max() <= 1 and not torch.allclose(images, ema_images)
    for i in range(2):
        states = group.fruit_state_dicts(i)
        g, d, ema = gm.Generator(cfg), gm.Discriminator(cfg), gm.Generator(cfg)
        g.load_state_dict(states["generator"])                 # strict: same keys and shapes
        d.load_state_dict(states["discriminator"])
        ema.load_state_dict(states["ema"])
        torch.testing.assert_close(gm.generate(g, noise[i]), images[i], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(gm.generate(ema, noise[i]), ema_images[i], atol=1e-5, rtol=1e-4)
        assert int(states["discriminator"]["bn2.num_batches_tracked"]) == 3   # D ran 3 passes in the step
        assert int(states["generator"]["bn0.num_batches_tracked"]) == 1


def test_load_fruit_state_dicts_replaces_one_fruit_only():
    cfg = gm.GANConfig(resolution=SIZE, **SMALL)
    group = gg.GroupedGAN(cfg, 3)
    before = [group.fruit_state_dicts(i) for i in range(3)]
    donor = gm.compile_gan(cfg)
    group.load_fruit_state_dicts(1, {"generator": donor.generator.state_dict(),
                                     "discriminator": donor.discriminator.state_dict(), "ema": None})
    after = group.fruit_state_dicts(1)
    assert torch.equal(after["generator"]["fc.weight"], donor.generator.fc.weight.detach())
    for i in (0, 2):
        assert torch.equal(group.fruit_state_dicts(i)["generator"]["fc.weight"], before[i]["generator"]["fc.weight"])
    with pytest.raises(ValueError, match="does not fit"):
        group.load_fruit_state_dicts(0, {"generator": {}, "discriminator": {}})


def test_checkpoint_round_trip_continues_identically():
    """Per-fruit weights + Adam state, as the trainer's checkpoints hold them, restore a group exactly."""
    cfg = gm.GANConfig(resolution=SIZE, ema_decay=0.9, **SMALL)
    torch.manual_seed(3)
    group = gg.GroupedGAN(cfg, 2)
    real, noise = torch.rand(2, 4, 1, SIZE, SIZE) * 2 - 1, torch.randn(2, 4, gm.NOISE_DIM)
    group.train_step(real, noise)
    buf = io.BytesIO()
    torch.save([{**group.fruit_state_dicts(i), "optimizers": group.fruit_optimizer_states(i)} for i in range(2)], buf)
    buf.seek(0)
    restored = gg.GroupedGAN(cfg, 2)
    for i, saved in enumerate(torch.load(buf, weights_only=True)):
        restored.load_fruit_state_dicts(i, saved)
        restored.load_fruit_optimizer_states(i, saved["optimizers"])
    torch.manual_seed(4)                                     # same dropout masks for both continuations
    a = group.train_step(real, noise)
    torch.manual_seed(4)
    b = restored.train_step(real, noise)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    for i in range(2):
        sa, sb = group.fruit_state_dicts(i), restored.fruit_state_dicts(i)
        for kind in ("generator", "discriminator", "ema"):
            for name in sa[kind]:
                torch.testing.assert_close(sa[kind][name], sb[kind][name])


def test_bad_inputs_are_refused():
    cfg = gm.GANConfig(resolution=SIZE, **SMALL)
    group = gg.GroupedGAN(cfg, 2)
    with pytest.raises(ValueError, match="expected real"):
        group.train_step(torch.zeros(3, 4, 1, SIZE, SIZE), torch.zeros(3, 4, gm.NOISE_DIM))
    with pytest.raises(ValueError, match="precision"):
        gg.GroupedGAN(cfg, 2, precision="fp8")
    with pytest.raises(ValueError, match="share one GANConfig"):
        gg.GroupedGAN.from_compiled([gm.compile_gan(cfg), gm.compile_gan(gm.GANConfig(resolution=32, **SMALL))])


def test_bf16_autocast_step_runs_and_trains():
    cfg = gm.GANConfig(resolution=SIZE, **SMALL)
    torch.manual_seed(5)
    group = gg.GroupedGAN(cfg, 2, precision="bf16")
    before = group.fruit_state_dicts(0)["generator"]["conv1.weight"]
    out = group.train_step(torch.rand(2, 4, 1, SIZE, SIZE) * 2 - 1, torch.randn(2, 4, gm.NOISE_DIM))
    assert all(v.shape == (2,) and v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())
    after = group.fruit_state_dicts(0)["generator"]["conv1.weight"]
    assert after.dtype == torch.float32 and not torch.equal(before, after)   # master weights stay fp32


def test_compile_failure_falls_back_to_eager(monkeypatch):
    def broken_compile(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    cfg = gm.GANConfig(resolution=SIZE, **SMALL)
    group = gg.GroupedGAN(cfg, 2, compile=True)
    with pytest.warns(UserWarning, match="training eagerly"):
        out = group.train_step(torch.rand(2, 4, 1, SIZE, SIZE) * 2 - 1, torch.randn(2, 4, gm.NOISE_DIM))
    assert torch.isfinite(out["g_loss"]).all()


def test_cuda_graph_request_on_cpu_runs_eagerly():
    cfg = gm.GANConfig(resolution=SIZE, **SMALL)
    with pytest.warns(UserWarning, match="CUDA"):
        group = gg.GroupedGAN(cfg, 2, cuda_graph=True)
    assert not group.cuda_graph
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = group.train_step(torch.rand(2, 4, 1, SIZE, SIZE) * 2 - 1, torch.randn(2, 4, gm.NOISE_DIM))
    assert torch.isfinite(out["d_loss"]).all()


def test_subpixel_upconv_equals_upsample_then_conv(float64):
    torch.manual_seed(6)
    x = torch.randn(2, 3 * 4, 5, 5)                           # 3 fruits x 4 channels
    weight = torch.randn(3, 6, 4, 3, 3)                       # (G, Cout, Cin, 3, 3)
    taps = torch.tensor(stacked.SUBPIXEL_TAPS)
    fast = stacked._upconv(x, {"c.weight": weight}, "c", 3, taps)
    slow = torch.nn.functional.conv2d(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"),
                                      weight.flatten(0, 1), padding=1, groups=3)
    assert fast.shape == (2, 18, 10, 10)
    torch.testing.assert_close(fast, slow, atol=1e-12, rtol=1e-12)


def test_snapshot_restore_undoes_steps_and_zeroes_new_adam_state():
    # The CUDA-graph warm-up relies on this: warm-up steps must leave no trace in the training.
    cfg = gm.GANConfig(resolution=SIZE, ema_decay=0.9, **SMALL)
    torch.manual_seed(7)
    group = gg.GroupedGAN(cfg, 2, layout="grouped")
    before = [group.fruit_state_dicts(i) for i in range(2)]
    saved = group._snapshot()
    assert not group.g_optimizer.state                        # no Adam state before the first step
    group.train_step(torch.rand(2, 4, 1, SIZE, SIZE) * 2 - 1, torch.randn(2, 4, gm.NOISE_DIM))
    group._restore(saved)
    for i in range(2):
        now = group.fruit_state_dicts(i)
        for kind in ("generator", "discriminator", "ema"):
            for name, t in before[i][kind].items():
                assert torch.equal(now[kind][name], t), (kind, name)
    for opt in (group.g_optimizer, group.d_optimizer):
        for st in opt.state.values():
            assert float(st["step"]) == 0 and not st["exp_avg"].any() and not st["exp_avg_sq"].any()


def test_deepcopy_gives_an_independent_group():
    # The trainer times a few steps on a deep copy before training; the original must not move.
    import copy

    cfg = gm.GANConfig(resolution=SIZE, **SMALL)
    group = gg.GroupedGAN(cfg, 2)
    before = group.fruit_state_dicts(1)["generator"]["fc.weight"]
    probe = copy.deepcopy(group)
    probe.train_step(torch.rand(2, 4, 1, SIZE, SIZE) * 2 - 1, torch.randn(2, 4, gm.NOISE_DIM))
    assert torch.equal(group.fruit_state_dicts(1)["generator"]["fc.weight"], before)
    assert not torch.equal(probe.fruit_state_dicts(1)["generator"]["fc.weight"], before)
    assert not group.g_optimizer.state and probe.g_optimizer.state


def test_one_channel_conv_as_taps_equals_conv2d(float64):
    torch.manual_seed(8)
    x = torch.randn(2, 3 * 4, 5, 6)                           # 3 fruits x 4 channels, not square
    weight = torch.randn(3, 1, 4, 3, 3)                       # (G, 1, Cin, 3, 3)
    bias = torch.randn(3, 1)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        xs = x.contiguous(memory_format=memory_format)
        fast = stacked._conv_to_one(xs, {"c.weight": weight, "c.bias": bias}, "c", 3)
        slow = torch.nn.functional.conv2d(xs, weight.flatten(0, 1), bias.flatten(), padding=1, groups=3)
        assert fast.shape == (2, 3, 5, 6)
        torch.testing.assert_close(fast, slow, atol=1e-12, rtol=1e-12)


def _split_group(group, cfg, layout):
    """Each fruit of ``group`` alone in a group of its own, starting from the same weights."""
    alone = []
    for i in range(group.num_fruits):
        g = gg.GroupedGAN(cfg, 1, layout=layout)
        g.load_fruit_state_dicts(0, group.fruit_state_dicts(i))
        alone.append(g)
    return alone


@pytest.mark.parametrize("layout", ["grouped", "loop"])
def test_dropout_diffaugment_and_r1_step_each_fruit_as_alone(float64, layout):
    # With each fruit's own random numbers (dropout masks, shifts, cut-outs) given, a fruit trains exactly
    # as in a group of its own: nothing in a step is drawn from a stream the fruits share.
    cfg = gm.GANConfig(resolution=SIZE, dropout=0.25, ema_decay=0.9, diff_augment="translation,cutout",
                       r1_gamma=1.0, **SMALL)
    torch.manual_seed(0)
    group = gg.GroupedGAN(cfg, FRUITS, layout=layout)
    alone = _split_group(group, cfg, layout)
    gens = [torch.Generator().manual_seed(50 + i) for i in range(FRUITS)]
    for real, noise in _batches(STEPS):
        per_fruit = [ga.draw_step_random(cfg, BATCH, g, "cpu") for g in gens]
        out = group.train_step(real, noise, ga.stack_fruits(per_fruit))
        for i, single in enumerate(alone):
            mine = single.train_step(real[i:i + 1], noise[i:i + 1], ga.stack_fruits([per_fruit[i]]))
            for key, value in mine.items():
                assert out[key][i].item() == pytest.approx(value.item(), abs=1e-9), (i, key)
    for i, single in enumerate(alone):
        for kind, state in group.fruit_state_dicts(i).items():
            for name, t in state.items():
                assert (t.double() - single.fruit_state_dicts(0)[kind][name].double()).abs().max() < 1e-9, name


def test_r1_penalty_is_the_squared_gradient_norm_at_real_images(float64):
    torch.manual_seed(0)
    real = torch.rand(BATCH, 2, SIZE, SIZE, requires_grad=True)
    w = torch.randn(2, SIZE * SIZE)
    logits = (real.flatten(2) * w).sum(2).pow(2)                             # (B, G), gradient 2 l w x-dependent
    penalty = stacked._r1_penalty(logits, real)
    expected = (2 * (real.flatten(2) * w).sum(2, keepdim=True) * w).pow(2).sum(2).mean(0)
    assert torch.allclose(penalty, expected.detach())
    penalty.sum().backward()                                                 # differentiable: D's step needs it
    assert real.grad is not None and real.grad.abs().sum() > 0


def test_step_randomness_of_the_wrong_shape_is_refused():
    cfg = gm.GANConfig(resolution=SIZE, dropout=0.25, **SMALL)
    group = gg.GroupedGAN(cfg, FRUITS)
    real, noise = _batches(1)[0]
    with pytest.raises(ValueError, match="randomness"):
        group.train_step(real.float(), noise.float(), {"dropout": torch.rand(FRUITS, 3, BATCH, 5)})
