"""The assignment's networks: one DCGAN per fruit (Generator, Discriminator, the stacked model).

Shapes below use B = batch, nz = noise size (100), R = image size, S = R // 4 (generator start size),
C = cfg.g_channels, D = cfg.d_channels. Images are (B, 1, R, R) in [-1, 1], white strokes on black.

The reference training step (``train_step``) is deliberately plain: the fast multi-fruit path in
grouped_gan.py must reproduce exactly what it computes for each fruit."""
from __future__ import annotations

import copy
import sys
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

import torch
import torch.nn as nn

from fruitgan.util import settings
from fruitgan.util.safe_files import DAMAGED_FIX
from fruitgan.util.user_io import UserError

NOISE_DIM = settings.NOISE_DIM.default
PAYLOAD_FORMAT = "fruitgan/1"
KINDS = ("generator", "discriminator")

INIT_STD = 0.02            # DCGAN paper initialisation: N(0, 0.02) weights, BN gamma N(1, 0.02)
# Convolutions followed by batch normalisation have no bias: BN subtracts the channel mean,
# which cancels any bias (its gradient is exactly zero), so it would only be dead weight.
KERNEL = 3                 # all convolutions are 3x3 ...
PADDING = 1                # ... with "same" padding
FAKE_LABEL = 0.0
BN_MOMENTUM = 0.1          # PyTorch's BatchNorm defaults, named so grouped_gan.py uses the same
BN_EPS = 1e-5
# Pixels drawn per generator pass outside training: each activation of the default generator then stays near
# 130 MB (C/2 = 64 channels x 2^19 pixels x 4 bytes) at any resolution and however many fruits draw at once.
GENERATE_PIXELS = 1 << 19


@dataclass(frozen=True)
class GANConfig:
    """Everything that defines one fruit's GAN (saved with every model file)."""

    resolution: int = settings.RESOLUTION.default  # image side R; settings.parse_resolution's rule
    noise_dim: int = settings.NOISE_DIM.default    # length of the normal noise vector fed to the generator
    g_channels: int = settings.G_CHANNELS.default  # generator width C: C at S and 2S, C/2 at 2S and R
    d_channels: int = settings.D_CHANNELS.default  # discriminator width D: D, 2D, 4D feature maps
    dropout: float = settings.DROPOUT.default          # Dropout2d probability after each discriminator block
    leaky_slope: float = settings.LEAKY_SLOPE.default  # LeakyReLU negative slope (both networks)
    lr: float = settings.LR.default  # Adam learning rate (both networks)
    beta1: float = settings.BETA1.default  # Adam beta1 (0.5 as in DCGAN: less momentum, steadier GANs)
    beta2: float = settings.BETA2.default  # Adam beta2
    real_label: float = settings.REAL_LABEL.default  # target for real images; < 1: one-sided label smoothing
    ema_decay: float = settings.EMA_DECAY.default    # > 0 keeps a moving average copy of the generator
    diff_augment: str = settings.DIFF_AUGMENT.default  # DiffAugment of D's inputs (gan_augment.py); "none": off
    augment_p: float = settings.AUGMENT_P.default    # share of images each DiffAugment operation touches
    r1_gamma: float = settings.R1_GAMMA.default      # R1 penalty weight on D's gradient at real images; 0: off

    def __post_init__(self) -> None:
        # Every field against its one declaration in settings.py (type, bounds, rules), named by its flag.
        settings.check_values(asdict(self), settings.GAN_SETTINGS, "GAN settings", "choose a value within its bounds",
                              by_flag=True)

    @property
    def start_size(self) -> int:
        """S: the generator's first feature map side (two x2 upsamplings reach R)."""
        return self.resolution // 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "saved GAN config") -> "GANConfig":
        """A config read from a file (model, checkpoint, milestone file, kept epoch): every field checked
        against the settings' bounds BEFORE any network is built from it; a one-line UserError naming
        ``source`` (the file) otherwise."""
        hint = f"{DAMAGED_FIX} (or train the model again)"
        if not isinstance(d, dict):
            raise UserError(f"{source}: the GAN config is not a mapping of settings (it is of type "
                            f"{type(d).__name__}); {hint}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(map(str, set(d) - known))
        if unknown:
            raise UserError(f"{source}: unknown GAN config setting(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(known))}); {hint}")
        return cls(**settings.check_values(d, settings.GAN_SETTINGS, source, hint))


def conv_out_size(size: int, stride: int = 2) -> int:
    """Side after a 3x3 convolution with padding 1 and ``stride`` (ceil(size / stride))."""
    return (size + 2 * PADDING - KERNEL) // stride + 1


def disc_feature_size(resolution: int) -> int:
    """Side of the discriminator's last feature map (three stride-2 convolutions)."""
    size = resolution
    for _ in range(3):
        size = conv_out_size(size)
    return size


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation, applied to every layer."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """Noise (B, nz) -> image (B, 1, R, R) in [-1, 1]."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.config = cfg
        c, s, slope = cfg.g_channels, cfg.start_size, cfg.leaky_slope
        # Input layer: fully connected from the noise, LeakyReLU, batch normalisation.
        self.fc = nn.Linear(cfg.noise_dim, c * s * s)             # (B, nz) -> (B, C*S*S)
        self.act0 = nn.LeakyReLU(slope)
        self.bn0 = batch_norm(c)                              # on (B, C, S, S)
        # Second layer: upsample to 2S, two convolutions.
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")    # (B, C, S, S) -> (B, C, 2S, 2S)
        self.conv1 = nn.Conv2d(c, c, KERNEL, padding=PADDING, bias=False)     # -> (B, C, 2S, 2S)
        self.bn1 = batch_norm(c)
        self.act1 = nn.LeakyReLU(slope)
        self.conv2 = nn.Conv2d(c, c // 2, KERNEL, padding=PADDING, bias=False)  # -> (B, C/2, 2S, 2S)
        self.bn2 = batch_norm(c // 2)
        self.act2 = nn.LeakyReLU(slope)
        # Third layer: upsample to R, one convolution.
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")    # -> (B, C/2, R, R)
        self.conv3 = nn.Conv2d(c // 2, c // 2, KERNEL, padding=PADDING, bias=False)  # -> (B, C/2, R, R)
        self.bn3 = batch_norm(c // 2)
        self.act3 = nn.LeakyReLU(slope)
        # Output layer: one grey channel squashed into [-1, 1] like the training images.
        self.conv_out = nn.Conv2d(c // 2, 1, KERNEL, padding=PADDING)  # -> (B, 1, R, R)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c, s = self.config.g_channels, self.config.start_size
        x = self.act0(self.fc(z))                                 # (B, C*S*S)
        x = self.bn0(x.view(-1, c, s, s))                         # (B, C, S, S)
        x = self.act1(self.bn1(self.conv1(self.up1(x))))          # (B, C, 2S, 2S)
        x = self.act2(self.bn2(self.conv2(x)))                    # (B, C/2, 2S, 2S)
        x = self.act3(self.bn3(self.conv3(self.up2(x))))          # (B, C/2, R, R)
        return torch.tanh(self.conv_out(x))                       # (B, 1, R, R)


class Discriminator(nn.Module):
    """Image (B, 1, R, R) -> one logit per image (B,); sigmoid(logit) = P(real)."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.config = cfg
        d, slope, p = cfg.d_channels, cfg.leaky_slope, cfg.dropout
        f = disc_feature_size(cfg.resolution)                     # F = ceil(R / 8)
        self.conv1 = nn.Conv2d(1, d, KERNEL, stride=2, padding=PADDING)  # -> (B, D, R/2, R/2)
        self.act1 = nn.LeakyReLU(slope)
        self.drop1 = nn.Dropout2d(p)
        self.conv2 = nn.Conv2d(d, 2 * d, KERNEL, stride=2, padding=PADDING, bias=False)  # -> (B, 2D, R/4, R/4)
        self.bn2 = batch_norm(2 * d)
        self.act2 = nn.LeakyReLU(slope)
        self.drop2 = nn.Dropout2d(p)
        self.conv3 = nn.Conv2d(2 * d, 4 * d, KERNEL, stride=2, padding=PADDING, bias=False)  # -> (B, 4D, F, F)
        self.bn3 = batch_norm(4 * d)
        self.act3 = nn.LeakyReLU(slope)
        self.drop3 = nn.Dropout2d(p)
        self.fc = nn.Linear(4 * d * f * f, 1)                     # (B, 4D*F*F) -> (B, 1)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act1(self.conv1(x)))                  # (B, D, R/2, R/2)
        x = self.drop2(self.act2(self.bn2(self.conv2(x))))        # (B, 2D, R/4, R/4)
        x = self.drop3(self.act3(self.bn3(self.conv3(x))))        # (B, 4D, F, F)
        return self.fc(x.flatten(1)).squeeze(1)                   # (B,)


class StackedGAN(nn.Module):
    """Generator then discriminator: the model the generator is trained through."""

    def __init__(self, generator: Generator, discriminator: Discriminator):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.discriminator(self.generator(z))              # (B, nz) -> (B,) logits


@dataclass
class CompiledGAN:
    """One fruit's GAN "compiled": both networks with their Adam optimizers and the loss."""

    config: GANConfig
    generator: Generator
    discriminator: Discriminator
    stacked: StackedGAN
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    ema: Optional[Generator] = None   # moving-average generator (cfg.ema_decay > 0), eval mode


def make_adam(params, cfg: GANConfig, **kwargs: Any) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **kwargs)


def compile_gan(cfg: GANConfig, device: str | torch.device = "cpu") -> CompiledGAN:
    """Build both networks on ``device`` and attach Adam + BCE-with-logits to each."""
    generator = Generator(cfg).to(device)
    discriminator = Discriminator(cfg).to(device)
    ema = copy.deepcopy(generator).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
    return CompiledGAN(config=cfg, generator=generator, discriminator=discriminator,
                       stacked=StackedGAN(generator, discriminator), g_optimizer=make_adam(generator.parameters(), cfg),
                       d_optimizer=make_adam(discriminator.parameters(), cfg), loss_fn=nn.BCEWithLogitsLoss(), ema=ema)


# The moving average's warm-up: after t generator steps its decay is min(ema_decay, (1+t)/(EMA_WARMUP+t)),
# so the untrained start fades within a few hundred steps instead of the ~1/(1-decay) a fixed decay needs
# (measured: a fixed 0.999 still drew noise after 40 apple epochs).
EMA_WARMUP = 10


def ema_decay_at(decay: float, steps: torch.Tensor) -> torch.Tensor:
    """The warmed-up decay after ``steps`` generator steps, a 0-dim float tensor on steps' device."""
    t = steps.to(torch.float32)
    return torch.clamp((1 + t) / (EMA_WARMUP + t), max=decay)


def generator_steps(generator: nn.Module) -> torch.Tensor:
    """Steps the generator has trained, read from its first BatchNorm's counter (saved with its weights)."""
    return next(b for n, b in generator.named_buffers() if n.endswith("num_batches_tracked"))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- d * ema + (1 - d) * model for parameters, d the warmed-up decay; buffers (BN statistics) copied."""
    ema_params = list(ema.parameters())
    weight = 1.0 - ema_decay_at(decay, generator_steps(model))
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], weight)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def train_step(gan: CompiledGAN, real: torch.Tensor, noise: torch.Tensor) -> dict:
    """One reference GAN step on a real batch (B,1,R,R) and noise (B,nz); returns float metrics.

    1. Discriminator: real images labelled ``real_label``, G(z).detach() labelled 0.
    2. Generator: D(G(z)) labelled real (the stacked model), reusing the same G(z)."""
    g, d, loss_fn, cfg = gan.generator, gan.discriminator, gan.loss_fn, gan.config
    g.train()
    d.train()
    fake = g(noise)                                               # (B, 1, R, R)
    real_target = torch.full((real.shape[0],), cfg.real_label, device=real.device)
    fake_target = torch.full((noise.shape[0],), FAKE_LABEL, device=real.device)

    gan.d_optimizer.zero_grad(set_to_none=True)
    logits_real = d(real)                                         # (B,)
    logits_fake = d(fake.detach())                                # (B,)
    # Mean over both halves: the BCE of the whole 2B-image batch, halves kept apart for BN.
    d_loss = 0.5 * (loss_fn(logits_real, real_target) + loss_fn(logits_fake, fake_target))
    d_loss.backward()
    gan.d_optimizer.step()

    gan.g_optimizer.zero_grad(set_to_none=True)
    g_loss = loss_fn(d(fake), torch.full_like(fake_target, cfg.real_label))  # stacked model, fakes "real"
    g_loss.backward()
    gan.g_optimizer.step()
    if gan.ema is not None:
        update_ema(gan.ema, g, cfg.ema_decay)

    return {"d_loss": d_loss.item(), "g_loss": g_loss.item(),
            "d_real": torch.sigmoid(logits_real.detach()).mean().item(),
            "d_fake": torch.sigmoid(logits_fake.detach()).mean().item()}


def generate_batch(resolution: int, fruits: int = 1) -> int:
    """Images per fruit in one generator pass outside training (GENERATE_PIXELS in all, at least one)."""
    return max(1, GENERATE_PIXELS // (fruits * resolution * resolution))


@torch.no_grad()
def generate(generator: nn.Module, noise: torch.Tensor) -> torch.Tensor:
    """Images (B,1,R,R) in [-1,1] on the CPU from noise (B,nz), in eval mode (BN running statistics), mode
    restored after; in passes of generate_batch images, so memory stays bounded."""
    was_training = generator.training
    generator.eval()
    step = generate_batch(generator.config.resolution)
    try:
        device = next(generator.parameters()).device
        starts = range(0, max(noise.shape[0], 1), step)             # no noise: one empty pass, (0,1,R,R) out
        return torch.cat([generator(noise[s:s + step].to(device)).cpu() for s in starts])
    finally:
        generator.train(was_training)


def network_payload(net: nn.Module, cfg: GANConfig, kind: str, **meta: Any) -> dict:
    """A weights_only-loadable dict describing one network (tensors moved to CPU)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return {"format": PAYLOAD_FORMAT, "kind": kind, "config": cfg.to_dict(), "state_dict": state, **meta}


def network_from_payload(payload: Any, source: str = "model file") -> nn.Module:
    """Rebuild a Generator or Discriminator from ``network_payload`` output (UserError if it is not one);
    ``source`` (the file) is named when its config is out of bounds."""
    if not isinstance(payload, dict) or payload.get("format") != PAYLOAD_FORMAT:
        raise UserError(f"{source} is not a {PAYLOAD_FORMAT} model file; train a model with train_gan.py first")
    kind = payload.get("kind")
    if kind not in KINDS:
        raise UserError(f"{source} holds an unknown network kind {kind!r}; expected one of {', '.join(KINDS)}")
    cfg = GANConfig.from_dict(payload.get("config"), source)
    net = Generator(cfg) if kind == "generator" else Discriminator(cfg)
    try:
        net.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{source}: its {kind} weights do not match its config ({first}); the file is damaged") from None
    return net.eval()


def main(argv=None) -> int:
    """Print each network's layers and parameter counts for a resolution (a quick look, no training)."""
    import argparse

    parser = argparse.ArgumentParser(description="Show the GAN networks for one image size.")
    settings.RESOLUTION.add_to(parser)
    args = parser.parse_args(argv)
    cfg = GANConfig(resolution=settings.RESOLUTION.given(args.resolution))
    for net in (Generator(cfg), Discriminator(cfg)):
        count = sum(p.numel() for p in net.parameters())
        print(net)
        print(f"{type(net).__name__}: {count:,} parameters\n")
    return 0


if __name__ == "__main__":
    from fruitgan.util.user_io import run_main

    sys.exit(run_main(main))
