"""The assignment's networks: shapes, the reference step, EMA, and the saved-model payload."""
import io

import pytest
import torch

import gan_model as gm
from fruitgan.util.user_io import UserError

SMALL = dict(g_channels=16, d_channels=8)   # narrow networks keep the tests fast; layout is unchanged


@pytest.mark.parametrize("resolution", [28, 32, 64, 128])
def test_shapes_at_each_resolution(resolution):
    torch.manual_seed(0)
    cfg = gm.GANConfig(resolution=resolution, **SMALL)
    g, d = gm.Generator(cfg), gm.Discriminator(cfg)
    images = g(torch.randn(3, gm.NOISE_DIM))
    assert images.shape == (3, 1, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1      # Tanh output
    logits = d(images)
    assert logits.shape == (3,)                           # one logit per image
    assert gm.StackedGAN(g, d)(torch.randn(2, gm.NOISE_DIM)).shape == (2,)


def test_default_plan_matches_the_reference_layout():
    cfg = gm.GANConfig(resolution=64)
    g, d = gm.Generator(cfg), gm.Discriminator(cfg)
    assert g.fc.out_features == 128 * 16 * 16
    assert [(m.in_channels, m.out_channels) for m in (g.conv1, g.conv2, g.conv3, g.conv_out)] == [
        (128, 128), (128, 64), (64, 64), (64, 1)]
    assert [(m.in_channels, m.out_channels, m.stride) for m in (d.conv1, d.conv2, d.conv3)] == [
        (1, 32, (2, 2)), (32, 64, (2, 2)), (64, 128, (2, 2))]
    assert d.fc.in_features == 128 * 8 * 8 and d.fc.out_features == 1


@pytest.mark.parametrize("bad", [30, 8, 512, 27])
def test_bad_resolution_is_a_user_error(bad):
    with pytest.raises(UserError, match="--resolution"):
        gm.GANConfig(resolution=bad)


def test_config_round_trip_and_unknown_keys():
    cfg = gm.GANConfig(resolution=32, real_label=0.9, ema_decay=0.99)
    assert gm.GANConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UserError, match="unknown GAN config"):
        gm.GANConfig.from_dict({**cfg.to_dict(), "colour": 3})
    with pytest.raises(UserError, match="real_label"):
        gm.GANConfig(real_label=0.2)


def test_compile_attaches_adam_and_bce():
    gan = gm.compile_gan(gm.GANConfig(resolution=28, **SMALL))
    for opt, net in ((gan.g_optimizer, gan.generator), (gan.d_optimizer, gan.discriminator)):
        assert isinstance(opt, torch.optim.Adam)
        assert opt.defaults["lr"] == pytest.approx(2e-4) and opt.defaults["betas"] == (0.5, 0.999)
        assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in net.parameters()}
    assert isinstance(gan.loss_fn, torch.nn.BCEWithLogitsLoss)
    # The default keeps a moving average of the generator (the ablation's pick); decay 0 keeps none.
    assert gan.stacked.generator is gan.generator and gan.ema is not None and not gan.ema.training
    assert gm.compile_gan(gm.GANConfig(resolution=28, ema_decay=0.0, **SMALL)).ema is None


def test_reference_step_changes_both_networks_and_reports_finite_values():
    torch.manual_seed(1)
    gan = gm.compile_gan(gm.GANConfig(resolution=28, **SMALL))
    g_before = [p.detach().clone() for p in gan.generator.parameters()]
    d_before = [p.detach().clone() for p in gan.discriminator.parameters()]
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    out = gm.train_step(gan, real, torch.randn(8, gm.NOISE_DIM))
    assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(isinstance(v, float) and torch.isfinite(torch.tensor(v)) for v in out.values())
    assert 0 < out["d_real"] < 1 and 0 < out["d_fake"] < 1
    assert all(not torch.equal(a, p) for a, p in zip(g_before, gan.generator.parameters()))
    assert all(not torch.equal(a, p) for a, p in zip(d_before, gan.discriminator.parameters()))


def test_discriminator_learns_to_separate_real_from_fake():
    # A few steps on a fixed "real" pattern: D's confidence on real images must rise above its
    # confidence on the generator's images (a check that the labels are not swapped).
    torch.manual_seed(2)
    gan = gm.compile_gan(gm.GANConfig(resolution=28, lr=1e-3, dropout=0.0, **SMALL))
    real = -torch.ones(16, 1, 28, 28)
    real[:, :, 10:18, :] = 1.0
    for _ in range(15):
        out = gm.train_step(gan, real, torch.randn(16, gm.NOISE_DIM))
    assert out["d_real"] > out["d_fake"]


def test_ema_tracks_generator():
    torch.manual_seed(3)
    decay = 0.5
    gan = gm.compile_gan(gm.GANConfig(resolution=28, ema_decay=decay, **SMALL))
    start = [p.detach().clone() for p in gan.ema.parameters()]
    gm.train_step(gan, torch.rand(4, 1, 28, 28) * 2 - 1, torch.randn(4, gm.NOISE_DIM))
    warm = 2 / (gm.EMA_WARMUP + 1)      # the first step's warmed-up decay, below the configured 0.5
    for s, e, p in zip(start, gan.ema.parameters(), gan.generator.parameters()):
        torch.testing.assert_close(e, warm * s + (1 - warm) * p.detach())
    for b_ema, b in zip(gan.ema.buffers(), gan.generator.buffers()):
        assert torch.equal(b_ema, b)
    assert not any(p.requires_grad for p in gan.ema.parameters())


def test_payload_round_trip_with_weights_only():
    torch.manual_seed(4)
    cfg = gm.GANConfig(resolution=32, **SMALL)
    gan = gm.compile_gan(cfg)
    gm.train_step(gan, torch.rand(4, 1, 32, 32) * 2 - 1, torch.randn(4, gm.NOISE_DIM))  # non-initial BN stats
    for net, kind in ((gan.generator, "generator"), (gan.discriminator, "discriminator")):
        buf = io.BytesIO()
        torch.save(gm.network_payload(net, cfg, kind, fruit="apple", epoch=3), buf)
        buf.seek(0)
        payload = torch.load(buf, weights_only=True)
        assert payload["fruit"] == "apple" and payload["epoch"] == 3 and payload["kind"] == kind
        rebuilt = gm.network_from_payload(payload)
        assert type(rebuilt) is type(net) and not rebuilt.training
        for (k, a), (k2, b) in zip(net.state_dict().items(), rebuilt.state_dict().items()):
            assert k == k2 and torch.equal(a, b)
    z = torch.randn(5, gm.NOISE_DIM)
    torch.testing.assert_close(gm.network_from_payload(gm.network_payload(gan.generator, cfg, "generator"))(z),
                               gm.generate(gan.generator, z))


def test_bad_payload_is_a_user_error():
    cfg = gm.GANConfig(resolution=28, **SMALL)
    with pytest.raises(UserError, match="not a fruitgan"):
        gm.network_from_payload({"format": "other"})
    payload = gm.network_payload(gm.Generator(cfg), cfg, "generator")
    payload["config"] = {**payload["config"], "g_channels": 32}   # weights no longer fit
    with pytest.raises(UserError, match="do not match"):
        gm.network_from_payload(payload)


def test_ema_warm_up_ramps_to_the_configured_decay():
    steps = torch.tensor([1, 10, 100, 1000, 10 ** 6])
    decays = torch.stack([gm.ema_decay_at(0.999, t) for t in steps])
    assert decays[0] < 0.2 and bool((decays[1:] >= decays[:-1]).all())
    assert decays[-1].item() == pytest.approx(0.999)
    # Unlike a fixed 0.999, the warmed-up average forgets the untrained start within a few hundred steps.
    torch.manual_seed(0)
    gan = gm.compile_gan(gm.GANConfig(resolution=28, ema_decay=0.999, **SMALL))
    start = [p.detach().clone() for p in gan.ema.parameters()]
    for _ in range(60):
        gm.train_step(gan, torch.rand(4, 1, 28, 28) * 2 - 1, torch.randn(4, gm.NOISE_DIM))
    moved = [(e - s).norm() / (p.detach() - s).norm() for s, e, p in
             zip(start, gan.ema.parameters(), gan.generator.parameters())]
    assert min(moved) > 0.5     # a fixed 0.999 would have moved about 6% of the way


@pytest.mark.parametrize("field, value", [("g_channels", 10**6), ("d_channels", 10**7), ("noise_dim", 10**9),
                                          ("resolution", 4096), ("g_channels", "128"), ("lr", True),
                                          ("dropout", float("nan")), ("ema_decay", 1.0)])
def test_a_saved_config_claiming_absurd_sizes_is_refused_before_anything_is_built(field, value, monkeypatch):
    """Issue 33: a file's config is checked against the settings' bounds before a layer is allocated."""
    def no_layers(*args, **kwargs):
        raise AssertionError("a layer was built from an unchecked config")

    monkeypatch.setattr(torch.nn.Linear, "__init__", no_layers)
    monkeypatch.setattr(torch.nn.Conv2d, "__init__", no_layers)
    payload = {"format": gm.PAYLOAD_FORMAT, "kind": "generator", "config": {field: value}, "state_dict": {}}
    with pytest.raises(UserError) as info:
        gm.network_from_payload(payload, "models/model_x/generator_apple.pt")
    text = str(info.value)
    assert text.startswith(f"models/model_x/generator_apple.pt: {field} ") and "\n" not in text


@pytest.mark.parametrize("config", [7, [1, 2], "resolution=28", None])
def test_a_saved_config_of_the_wrong_structure_is_one_line(config):
    with pytest.raises(UserError, match=r"^ckpt\.pt: the GAN config is not a mapping of settings \(it is of type"):
        gm.GANConfig.from_dict(config, "ckpt.pt")
