"""F fruits' networks as one set of stacked tensors (StackedNets: every parameter and buffer on a leading (F, ...)
axis), and the functional layers grouped.GroupedGAN runs any G of them through. "Upsample x2 then 3x3 conv" runs
as one stride-2 transposed conv with a 4x4 kernel from the 3x3 weights (sub-pixel form): the same function with
2.25x fewer multiply-adds and no upsampled tensor; the 3x3 weights stay the parameters, so exports load into
gan_model.Generator.

Shapes: G fruits, B images per fruit, nz noise size, R image side, C channels of a layer."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import gan_model as gm

# Sub-pixel form of "nearest x2 upsample, then 3x3 conv (padding 1)": output row 2i+a of the conv
# reads upsampled rows 2i+a-1..2i+a+1, i.e. input rows i-1, i (a=0) or i, i+1 (a=1). A transposed
# conv (stride 2, padding 1, kernel 4) writes input row i to output rows 2i-1+k, so its kernel tap k
# is the sum of the 3x3 taps landing there: k=0 <- w2, k=1 <- w1+w2, k=2 <- w0+w1, k=3 <- w0.
SUBPIXEL_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))   # (4, 3)


def _mangle(name: str) -> str:
    return name.replace(".", "__")   # nn.Module attribute names cannot hold dots


class StackedNets(nn.Module):
    """The same network for F fruits: every parameter and buffer stacked on a leading (F,) axis."""

    def __init__(self, nets: Sequence[nn.Module]):
        super().__init__()
        self.num_fruits = len(nets)
        self.plain_keys = list(nets[0].state_dict().keys())     # export order = plain state_dict order
        self.param_names = [n for n, _ in nets[0].named_parameters()]
        states = [net.state_dict() for net in nets]
        for name in self.plain_keys:
            stacked = torch.stack([s[name].detach() for s in states]).clone()   # (F, *plain shape)
            if name in self.param_names:
                self.register_parameter(_mangle(name), nn.Parameter(stacked))
            else:
                self.register_buffer(_mangle(name), stacked)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Plain name -> stacked tensor (F, ...), parameters and buffers."""
        return {name: getattr(self, _mangle(name)) for name in self.plain_keys}

    def stacked_params(self) -> list[nn.Parameter]:
        return [getattr(self, _mangle(n)) for n in self.param_names]

    def fruit_views(self, i: int) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """Fruit i as a 1-fruit group: name -> (1, ...) views, and the views to differentiate by."""
        params = [getattr(self, _mangle(n))[i] for n in self.param_names]   # gradients are taken here
        w = {name: t[i:i + 1] for name, t in self.tensors().items()}        # buffers: in-place BN updates
        w.update({n: p.unsqueeze(0) for n, p in zip(self.param_names, params)})
        return w, params

    def counters(self) -> list[torch.Tensor]:
        """BatchNorm num_batches_tracked buffers (F,), one per BN layer."""
        return [t for n, t in self.tensors().items() if n.endswith("num_batches_tracked")]

    def fruit_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Fruit i's weights in the plain network's state_dict format (CPU copies)."""
        return {name: t[i].detach().cpu().clone() for name, t in self.tensors().items()}

    @torch.no_grad()
    def load_fruit_state_dict(self, i: int, state: Mapping[str, torch.Tensor]) -> None:
        missing = sorted(set(self.plain_keys) - set(state))
        extra = sorted(set(state) - set(self.plain_keys))
        if missing or extra:
            raise ValueError(f"state_dict does not fit: missing {missing}, unexpected {extra}")
        for name, t in self.tensors().items():
            if tuple(state[name].shape) != tuple(t.shape[1:]):
                raise ValueError(f"{name}: shape {tuple(state[name].shape)} != {tuple(t.shape[1:])}")
            t[i].copy_(state[name])


# ---------------------------------------------------------------- functional layers, any G fruits
# ``w`` maps plain names to stacked tensors with a leading fruit axis of size G (G = F in the
# grouped layout, 1 in the loop layout). Activations are (B, G*C, H, W): fruit g owns channels
# g*C .. g*C+C-1, which is exactly what a groups=G convolution expects.

def _conv(x, w, name, groups, stride=1):
    weight = w[name + ".weight"]                                   # (G, Cout, Cin, 3, 3)
    bias = w.get(name + ".bias")                                   # (G, Cout) or None
    return F.conv2d(x, weight.flatten(0, 1), None if bias is None else bias.flatten(),
                    stride=stride, padding=gm.PADDING, groups=groups)   # (B, G*Cout, H', W')


def _upconv(x, w, name, groups, taps):
    """Nearest x2 upsample + 3x3 conv as one transposed conv: (B, G*Cin, H, W) -> (B, G*Cout, 2H, 2W)."""
    weight = w[name + ".weight"]                                   # (G, Cout, Cin, 3, 3)
    g, c_out, c_in = weight.shape[:3]
    taps = taps.to(weight.dtype)
    kernel = torch.einsum("ka,lb,goiab->giokl", taps, taps, weight)   # (G, Cin, Cout, 4, 4)
    bias = w.get(name + ".bias")
    return F.conv_transpose2d(x, kernel.reshape(g * c_in, c_out, 4, 4),
                              None if bias is None else bias.flatten(), stride=2, padding=1, groups=groups)


def _conv_to_one(x, w, name, groups):
    """3x3 convolution (padding 1) to ONE output channel per fruit, (B, G*Cin, H, W) -> (B, G, H, W), as nine
    1x1 taps summed shifted: oneDNN runs a one-output convolution at 17 GFLOP/s (~200 elsewhere); this took the
    last layer's forward + backward (batch 64) from 12.4 to 3.8 ms at 28 px, 60 to 21 ms at 64 px."""
    weight = w[name + ".weight"]                                   # (G, 1, Cin, 3, 3)
    g, _, c_in, k, _ = weight.shape
    taps = weight.permute(0, 3, 4, 2, 1).reshape(g * k * k, c_in, 1, 1)   # (G*9, Cin, 1, 1): tap (a, b) of fruit g
    # Unbound taps: each one's gradient is a small (B, G, H, W) tensor, not a slice of the 9-tap one.
    z = F.conv2d(x, taps, groups=groups).unflatten(1, (g, k * k)).unbind(2)   # 9 x (B, G, H, W)
    out = w[name + ".bias"].reshape(1, g, 1, 1)                               # (1, G, 1, 1)
    for a in range(k):
        for b in range(k):
            # output (i, j) reads tap (a, b) at (i+a-1, j+b-1), zero outside: a shift by padding/cropping
            out = out + F.pad(z[a * k + b], (gm.PADDING - b, b - gm.PADDING, gm.PADDING - a, a - gm.PADDING))
    return out                                                                # (B, G, H, W)


def _leaky(x, slope):
    """LeakyReLU in place where autograd allows it (slope > 0): every input here is a linear, convolution or
    batch norm output, which their backward passes do not read, so overwriting it saves an allocation."""
    return F.leaky_relu(x, slope, inplace=slope > 0)


def _bn(x, w, name, training):
    return F.batch_norm(x, w[name + ".running_mean"].view(-1), w[name + ".running_var"].view(-1),
                        w[name + ".weight"].view(-1), w[name + ".bias"].view(-1),
                        training=training, momentum=gm.BN_MOMENTUM, eps=gm.BN_EPS)


def generator_forward(w, z, cfg: gm.GANConfig, training: bool, taps, channels_last=False):
    """Noise (G, B, nz) -> images (B, G, R, R) for G fruits at once."""
    groups, batch = z.shape[0], z.shape[1]
    c, s, slope = cfg.g_channels, cfg.start_size, cfg.leaky_slope
    h = _leaky(torch.baddbmm(w["fc.bias"].unsqueeze(1), z, w["fc.weight"].transpose(1, 2)), slope)  # (G, B, C*S*S)
    h = h.view(groups, batch, c, s, s).transpose(0, 1).reshape(batch, groups * c, s, s)  # (B, G*C, S, S)
    if channels_last:
        h = h.contiguous(memory_format=torch.channels_last)
    h = _bn(h, w, "bn0", training)
    h = _leaky(_bn(_upconv(h, w, "conv1", groups, taps), w, "bn1", training), slope)  # (B, G*C, 2S, 2S)
    h = _leaky(_bn(_conv(h, w, "conv2", groups), w, "bn2", training), slope)       # (B, G*C/2, 2S, 2S)
    h = _leaky(_bn(_upconv(h, w, "conv3", groups, taps), w, "bn3", training), slope)  # (B, G*C/2, R, R)
    return torch.tanh(_conv_to_one(h, w, "conv_out", groups))                            # (B, G, R, R)


def _dropout(h, masks, layer: int, p: float, training: bool):
    """Dropout2d with the step's own masks (gan_augment.dropout_masks) when given, else torch's."""
    if masks is not None:
        return h * masks[layer].to(h.dtype)                                         # (B, G*C, 1, 1) per channel
    return F.dropout2d(h, p, training=training and p > 0)


def discriminator_forward(w, x, cfg: gm.GANConfig, training: bool, channels_last=False, masks=None):
    """Images (B, G, R, R) -> logits (B, G) for G fruits at once; ``masks``: the three Dropout2d masks."""
    batch, groups = x.shape[0], x.shape[1]
    slope, p = cfg.leaky_slope, cfg.dropout
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    h = _leaky(_conv(x, w, "conv1", groups, stride=2), slope)                      # (B, G*D, R/2, R/2)
    h = _dropout(h, masks, 0, p, training)
    h = _leaky(_bn(_conv(h, w, "conv2", groups, stride=2), w, "bn2", training), slope)  # (B, G*2D, R/4, R/4)
    h = _dropout(h, masks, 1, p, training)
    h = _leaky(_bn(_conv(h, w, "conv3", groups, stride=2), w, "bn3", training), slope)  # (B, G*4D, f, f)
    h = _dropout(h, masks, 2, p, training)
    feats = h.reshape(batch, groups, -1)                                                 # (B, G, 4D*f*f)
    return torch.einsum("bgk,gk->bg", feats, w["fc.weight"][:, 0]) + w["fc.bias"][:, 0]  # (B, G)


def _r1_penalty(logits_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): per fruit, the mean squared norm of D's gradient at the real images, logits_real
    (B, G) from ``real`` (B, G, R, R) -> (G,); differentiable (D's step backpropagates through it)."""
    (grad,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
    if grad.dtype in (torch.float16, torch.bfloat16):
        grad = grad.float()           # autocast: the penalty in fp32, like the losses
    return grad.pow(2).flatten(2).sum(2).mean(0)


def _bce_per_fruit(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean BCE-with-logits per fruit: logits (B, G) -> (G,), like BCEWithLogitsLoss per fruit."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()       # autocast: losses in fp32
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none").mean(0)
