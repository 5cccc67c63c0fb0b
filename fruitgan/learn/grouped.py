"""Fast path: the GANs of several fruits trained together, each computing exactly what it would alone.

Every parameter and buffer of the F fruits' networks is stacked on a leading (F, ...) axis (stacked.py), and
each step runs gan_model.train_step's recipe for all fruits at once, in one of two layouts:
* "grouped" (default on CUDA): fruits side by side on the channel axis, (B, F*C, H, W); groups=F convolutions
  and BatchNorm over F*C channels act per fruit. The summed loss gives each fruit exactly its own gradient, and
  one Adam over the stacked tensors equals F separate ones (elementwise, the same step count).
* "loop" (default on CPU): fruit after fruit, a whole reference step each on its (1, ...) slice; measured faster
  on a CPU (oneDNN's dense convolutions run ~2x its grouped ones; one fruit's activations alive at a time).
Either way checkpoints are the same. Speed switches change no function (bf16 only its rounding): precision
"bf16" (see cpu_has_bf16()), channels_last (default on CPU), compile (measured slower on the 2-core CPU),
cuda_graph (the whole step replayed as one CUDA graph) and tune_cpu_allocator().

Shapes: F fruits, B images per fruit, nz noise size, R image side."""
from __future__ import annotations

import contextlib
import ctypes
import math
import sys
import warnings
from typing import Callable, Mapping, Optional, Sequence

import torch

from fruitgan.learn import augment as ga
from fruitgan.learn.stacked import (SUBPIXEL_TAPS, StackedNets, _bce_per_fruit, _r1_penalty,
                                    discriminator_forward, generator_forward)
import gan_model as gm

PRECISIONS = ("fp32", "bf16")
LAYOUTS = ("auto", "grouped", "loop")
CUDA_GRAPH_WARMUP_STEPS = 3   # eager steps on a side stream before capture, as torch.cuda.graphs asks


def tune_cpu_allocator(keep_bytes: int = 1 << 30) -> bool:
    """Keep freed memory in the process (glibc); False where that does not apply. Each CPU step frees and
    re-maps the same big buffers, whose page faults took a third of the reference loop's time at 64 px.
    Process-wide, so the caller decides: once at start-up of a CPU training run."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4          # glibc's mallopt parameter numbers
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, int(keep_bytes)))


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), where --precision bf16 is faster
    (measured on a 2-core AMD EPYC with AVX512-BF16: the 7-fruit step 1.43x faster at 28 px than fp32)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):     # a torch without oneDNN, or one that renamed the query
        return False


def _fresh_networks(cfg: gm.GANConfig, seed: Optional[int]) -> tuple:
    """A newly initialised (Generator, Discriminator): from torch's generator, or from ``seed`` alone."""
    if seed is None:
        return gm.Generator(cfg), gm.Discriminator(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return gm.Generator(cfg), gm.Discriminator(cfg)


class GroupedGAN:
    """F fruits' GANs (same GANConfig) trained in lock-step; see the module docstring."""

    def __init__(self, cfg: gm.GANConfig, num_fruits: int, device: str | torch.device = "cpu",
                 precision: str = "fp32", layout: str = "auto", channels_last: Optional[bool] = None,
                 compile: bool = False, cuda_graph: bool = False, init_seeds: Optional[Sequence[int]] = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if num_fruits < 1:
            raise ValueError("num_fruits must be >= 1")
        self.config, self.num_fruits, self.precision = cfg, num_fruits, precision
        self.device = torch.device(device)
        is_cuda = self.device.type == "cuda"
        self.layout = ("grouped" if is_cuda else "loop") if layout == "auto" else layout
        # channels-last measured ~1.5x faster for oneDNN's CPU convolutions here; CUDA keeps NCHW
        # unless asked (cuDNN's grouped convolutions are not known to gain from it).
        self.channels_last = (not is_cuda) if channels_last is None else bool(channels_last)
        self.cuda_graph = bool(cuda_graph and is_cuda)
        if self.cuda_graph and self.layout != "grouped":
            raise ValueError("cuda_graph needs layout='grouped' (the loop layout reads Adam's step on the host)")
        if cuda_graph and not is_cuda:
            warnings.warn("cuda_graph needs a CUDA device; running eagerly", stacklevel=2)

        # Each fruit starts from its own freshly initialised plain networks (same init as gan_model): drawn from
        # torch's generator in turn, or, with ``init_seeds``, each from its own seed (the same in any group).
        if init_seeds is not None and len(init_seeds) != num_fruits:
            raise ValueError(f"need one init seed per fruit ({num_fruits}), got {len(init_seeds)}")
        nets = [_fresh_networks(cfg, None if init_seeds is None else init_seeds[i]) for i in range(num_fruits)]
        self.g = StackedNets([g for g, _ in nets]).to(self.device)
        self.d = StackedNets([d for _, d in nets]).to(self.device)
        self.ema: Optional[StackedNets] = None
        if cfg.ema_decay > 0:           # the moving average starts as the generator
            self.ema = StackedNets([g for g, _ in nets]).to(self.device)
            self.ema.requires_grad_(False)
        self._taps = torch.tensor(SUBPIXEL_TAPS, device=self.device)
        # One Adam per network over the stacked tensors (== one Adam per fruit). fused/foreach are
        # the multi-tensor kernels; the CUDA graph needs capturable state (step counter on device).
        opt_kwargs = {"capturable": True, "foreach": True} if self.cuda_graph else {"fused": True}
        self.g_optimizer = gm.make_adam(self.g.stacked_params(), cfg, **opt_kwargs)
        self.d_optimizer = gm.make_adam(self.d.stacked_params(), cfg, **opt_kwargs)

        self.compile = bool(compile)
        self._build_fns()
        self._graphs: dict = {}       # CUDA graphs by batch shape: {shape: (graph, static tensors)}

    def _build_fns(self) -> None:
        # torch.compile wraps the three forward pieces separately (one compiled autograd node
        # each, so the D step's backward cannot free what the G step still needs); autograd and
        # Adam stay eager. The CUDA graph, when on, captures the eager step instead.
        self._eager_fns = {"g_forward": self._g_forward, "d_losses": self._d_losses, "g_loss": self._g_loss}
        self._fns = {k: self._compiled(f) for k, f in self._eager_fns.items()} if self.compile \
            else dict(self._eager_fns)

    def __getstate__(self) -> dict:
        """copy.deepcopy support: graphs and compiled wrappers belong to the original, rebuilt on demand."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_fns", "_eager_fns")}
        state["_graphs"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build_fns()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_compiled(cls, gans: Sequence[gm.CompiledGAN], device=None, **kwargs) -> "GroupedGAN":
        """Group existing per-fruit GANs (same config): weights, BN statistics, EMA and Adam state."""
        if not gans:
            raise ValueError("need at least one CompiledGAN")
        cfg = gans[0].config
        if any(g.config != cfg for g in gans):
            raise ValueError("all fruits of a group must share one GANConfig")
        if device is None:
            device = next(gans[0].generator.parameters()).device
        group = cls(cfg, len(gans), device=device, **kwargs)
        for i, gan in enumerate(gans):
            group.load_fruit_state_dicts(i, {"generator": gan.generator.state_dict(),
                                             "discriminator": gan.discriminator.state_dict(),
                                             "ema": None if gan.ema is None else gan.ema.state_dict()})
        if any(gan.g_optimizer.state or gan.d_optimizer.state for gan in gans):
            for i, gan in enumerate(gans):
                group.load_fruit_optimizer_states(i, {
                    "generator": _adam_moments(gan.g_optimizer, gan.generator.named_parameters()),
                    "discriminator": _adam_moments(gan.d_optimizer, gan.discriminator.named_parameters())})
        return group

    def _compiled(self, fn: Callable) -> Callable:
        """torch.compile'd ``fn``, falling back to eager (with a warning) if compilation fails."""
        compiled = torch.compile(fn, dynamic=False)

        def call(*args):
            nonlocal compiled
            try:
                return compiled(*args)
            except Exception as exc:  # a missing C++ compiler or an unsupported op: stay correct, go eager
                if compiled is fn:
                    raise
                warnings.warn(f"torch.compile failed ({type(exc).__name__}); training eagerly", stacklevel=2)
                compiled = fn
                return fn(*args)

        return call

    def _autocast(self):
        if self.precision == "bf16":
            # cache disabled: required inside CUDA graph capture, harmless elsewhere
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ the step
    def _generate(self, w, z, training):
        """Noise (G, B, nz) -> (B, G, R, R) with weights ``w`` (G fruits)."""
        return generator_forward(w, z, self.config, training, self._taps, self.channels_last)

    def _discriminate(self, w, x, random):
        """Images (B, G, R, R) -> logits (B, G), train mode, with one pass's DiffAugment and dropout masks."""
        cfg = self.config
        x = ga.diff_augment(x, random)
        masks = ga.dropout_masks(random, cfg.dropout, ga.dropout_widths(cfg.d_channels), x.dtype)
        return discriminator_forward(w, x, cfg, True, self.channels_last, masks)

    def _g_forward(self, wg, noise: torch.Tensor) -> torch.Tensor:
        """Training-mode generator pass: noise (G, B, nz) -> fakes (B, G, R, R)."""
        with self._autocast():
            return self._generate(wg, noise, True)

    def _d_losses(self, wd, real: torch.Tensor, fake: torch.Tensor, random):
        """Discriminator step losses on real (B, G, R, R) and detached fakes (B, G, R, R), plus R1 if on."""
        cfg = self.config
        if cfg.r1_gamma > 0:
            real = real.detach().requires_grad_(True)
        with self._autocast():
            logits_real = self._discriminate(wd, real, ga.call_random(random, 0))    # (B, G)
            logits_fake = self._discriminate(wd, fake, ga.call_random(random, 1))    # (B, G)
        d_loss = 0.5 * (_bce_per_fruit(logits_real, cfg.real_label) + _bce_per_fruit(logits_fake, gm.FAKE_LABEL))
        if cfg.r1_gamma > 0:
            d_loss = d_loss + 0.5 * cfg.r1_gamma * _r1_penalty(logits_real, real)
        d_real = torch.sigmoid(logits_real.detach()).to(d_loss.dtype).mean(0)   # (G,)
        d_fake = torch.sigmoid(logits_fake.detach()).to(d_loss.dtype).mean(0)   # (G,)
        return d_loss, d_real, d_fake

    def _g_loss(self, wd, fake: torch.Tensor, random) -> torch.Tensor:
        """The stacked model's loss: the (updated) discriminator on the same fakes, labelled real."""
        with self._autocast():
            logits = self._discriminate(wd, fake, ga.call_random(random, 2))     # (B, G)
        return _bce_per_fruit(logits, self.config.real_label)               # (G,)

    def _losses_d_step(self, wg, wd, real, noise, random):
        fake = self._fns["g_forward"](wg, noise)                            # (B, G, R, R)
        d_loss, d_real, d_fake = self._fns["d_losses"](wd, real, fake.detach(), random)
        return fake, d_loss, d_real, d_fake

    def _step(self, real: torch.Tensor, noise: torch.Tensor, random) -> torch.Tensor:
        """The reference step for every fruit: real (F, B, 1, R, R), noise (F, B, nz) -> metrics (4, F)."""
        metrics = (self._step_grouped(real, noise, random) if self.layout == "grouped"
                   else self._step_loop(real, noise, random))
        with torch.no_grad():
            torch._foreach_add_(self.g.counters(), 1)    # BN layers saw 1 G pass and 3 D passes
            torch._foreach_add_(self.d.counters(), 3)
            if self.ema is not None:
                self._update_ema()
        return metrics

    def _step_grouped(self, real, noise, random):
        """All fruits in one pass per network; one Adam step over the stacked tensors."""
        f, b, r = noise.shape[0], noise.shape[1], self.config.resolution
        real = real.reshape(f, b, r, r).transpose(0, 1)                     # (B, F, R, R)
        wg, wd = self.g.tensors(), self.d.tensors()
        fake, d_loss, d_real, d_fake = self._losses_d_step(wg, wd, real, noise, random)
        self._set_grads(self.d, torch.autograd.grad(d_loss.sum(), self.d.stacked_params()))
        self.d_optimizer.step()
        g_loss = self._fns["g_loss"](wd, fake, random)
        # Only the generator's gradients: D's weight gradients would be thrown away anyway.
        self._set_grads(self.g, torch.autograd.grad(g_loss.sum(), self.g.stacked_params()))
        self.g_optimizer.step()
        return torch.stack([d_loss.detach(), g_loss.detach(), d_real, d_fake])   # (4, F)

    def _step_loop(self, real, noise, random):
        """Fruit after fruit, a whole reference step each on its slice (one fruit's activations alive at a time);
        the shared Adam step counters advance once all fruits have stepped."""
        rows = []
        for i in range(self.num_fruits):
            wg, g_params = self.g.fruit_views(i)
            wd, d_params = self.d.fruit_views(i)
            mine = {k: v[i:i + 1] for k, v in random.items()}              # (1, K, B, ...)
            fake, d_loss, d_real, d_fake = self._losses_d_step(wg, wd, real[i], noise[i:i + 1], mine)
            self._adam_slice(self.d_optimizer, self.d, i, torch.autograd.grad(d_loss.sum(), d_params))
            wd, _ = self.d.fruit_views(i)                                   # views of the updated D
            g_loss = self._fns["g_loss"](wd, fake, mine)
            self._adam_slice(self.g_optimizer, self.g, i, torch.autograd.grad(g_loss.sum(), g_params))
            rows.append(torch.cat([d_loss.detach(), g_loss.detach(), d_real, d_fake]))   # (4,)
        with torch.no_grad():
            for opt in (self.d_optimizer, self.g_optimizer):
                torch._foreach_add_([opt.state[p]["step"] for p in opt.param_groups[0]["params"]], 1)
        return torch.stack(rows, 1)                                         # (4, F)

    @torch.no_grad()
    def _adam_slice(self, opt: torch.optim.Adam, stack: "StackedNets", i: int, grads) -> None:
        """torch.optim.Adam's update (no weight decay/amsgrad) applied to fruit i's slice only."""
        group = opt.param_groups[0]
        beta1, beta2 = group["betas"]
        params = stack.stacked_params()
        states = [self._adam_state(opt, p) for p in params]
        # Host read: on the CPU (the loop layout's default device) the counter is host memory, no sync.
        # On CUDA it is a device tensor after a resume into fused Adam, and this would sync once per
        # fruit per step; the trainer's CUDA path uses the grouped layout, which never reads it.
        step = float(states[0]["step"]) + 1                                 # this step's number
        exp_avg = [st["exp_avg"][i] for st in states]
        exp_avg_sq = [st["exp_avg_sq"][i] for st in states]
        torch._foreach_lerp_(exp_avg, list(grads), 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, list(grads), list(grads), 1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(1 - beta2 ** step))
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_([p[i] for p in params], exp_avg, denom, -group["lr"] / (1 - beta1 ** step))

    @staticmethod
    def _adam_state(opt: torch.optim.Adam, p: torch.Tensor, step: float = 0.0, step_device="cpu") -> dict:
        """Adam's per-parameter state, created (at ``step``) as Adam itself would on its first step."""
        st = opt.state[p]
        if not st:
            st["step"] = torch.tensor(float(step), dtype=torch.float32, device=step_device)
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    @staticmethod
    def _set_grads(stack: StackedNets, grads) -> None:
        for p, g in zip(stack.stacked_params(), grads):
            # Fused Adam walks raw memory: a gradient with other strides than its parameter (the
            # transposed fc weight's) would be read in the wrong order, so lay it out like p.
            p.grad = g if g.stride() == p.stride() else g.contiguous()

    def _prepare(self, real: torch.Tensor, noise: torch.Tensor, random):
        f, b, r = self.num_fruits, noise.shape[1], self.config.resolution
        if real.shape != (f, b, 1, r, r) or noise.shape != (f, b, self.config.noise_dim):
            raise ValueError(f"expected real ({f}, {b}, 1, {r}, {r}) and noise ({f}, {b}, "
                             f"{self.config.noise_dim}); got {tuple(real.shape)} and {tuple(noise.shape)}")
        if random is None:      # no per-fruit streams given: torch's global generator, fruit after fruit
            random = ga.stack_fruits([ga.draw_step_random(self.config, b, None, self.device) for _ in range(f)])
        expected = {k: (f, *shape) for k, shape in ga.random_shapes(self.config, b).items()}
        given = {k: tuple(v.shape) for k, v in random.items()}
        if given != expected:
            raise ValueError(f"step randomness does not fit the config: expected {expected}, got {given}")
        random = {k: v.to(self.device, non_blocking=True) for k, v in random.items()}
        return real.to(self.device, non_blocking=True), noise.to(self.device, non_blocking=True), random

    def train_step(self, real: torch.Tensor, noise: torch.Tensor,
                   random: Optional[Mapping[str, torch.Tensor]] = None) -> dict[str, torch.Tensor]:
        """One step for every fruit: real (F,B,1,R,R), noise (F,B,nz) -> dict of (F,) tensors, left on the device
        (no host sync). ``random``: each fruit's gan_augment.draw_step_random, stacked ({name: (F, K, B, ...)});
        None draws them from torch's global generator."""
        real, noise, random = self._prepare(real, noise, random)
        metrics = (self._graph_step if self.cuda_graph else self._step)(real, noise, random)
        return dict(zip(("d_loss", "g_loss", "d_real", "d_fake"), metrics.unbind(0)))

    # ------------------------------------------------------------------ CUDA graph (whole step)
    def _graph_step(self, real: torch.Tensor, noise: torch.Tensor, random) -> torch.Tensor:
        """Replay the step captured for this batch shape (captured on its first use)."""
        key = tuple(real.shape)
        if key not in self._graphs:
            self._graphs[key] = self._capture(real, noise, random)
        graph, static = self._graphs[key]
        static["real"].copy_(real)
        static["noise"].copy_(noise)
        for k, v in random.items():
            static["random"][k].copy_(v)
        graph.replay()
        return static["metrics"].clone()

    def _step_eager(self, real, noise, random):
        fns, self._fns = self._fns, dict(self._eager_fns)
        try:
            return self._step(real, noise, random)
        finally:
            self._fns = fns

    def _capture(self, real: torch.Tensor, noise: torch.Tensor, random) -> tuple:
        """Warm up on a side stream (as torch.cuda.graphs asks), undo the warm-up, then capture."""
        static_real, static_noise = real.clone(), noise.clone()
        static_random = {k: v.clone() for k, v in random.items()}
        saved = self._snapshot()
        stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(CUDA_GRAPH_WARMUP_STEPS):
                self._step_eager(static_real, static_noise, static_random)   # creates Adam state, picks kernels
            self._restore(saved)                              # the warm-up must not count as training
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):                         # records only: nothing runs until replay
            metrics = self._step_eager(static_real, static_noise, static_random)
        return graph, {"real": static_real, "noise": static_noise, "random": static_random, "metrics": metrics}

    def _all_state_tensors(self) -> list[torch.Tensor]:
        stacks = [self.g, self.d] + ([self.ema] if self.ema is not None else [])
        tensors = [t for s in stacks for t in s.tensors().values()]
        for opt in (self.g_optimizer, self.d_optimizer):
            for p in opt.param_groups[0]["params"]:
                tensors.extend(v for v in opt.state.get(p, {}).values() if torch.is_tensor(v))
        return tensors

    @torch.no_grad()
    def _snapshot(self) -> dict:
        """Copies of every weight, buffer and existing Adam state tensor, keyed by identity."""
        return {id(t): (t, t.detach().clone()) for t in self._all_state_tensors()}

    @torch.no_grad()
    def _restore(self, saved: dict) -> None:
        """Back to the snapshot in place (addresses kept); Adam state created since starts at zero."""
        for t in self._all_state_tensors():
            if id(t) in saved:
                t.copy_(saved[id(t)][1])
            else:
                t.zero_()

    # ------------------------------------------------------------------ EMA and sampling
    @torch.no_grad()
    def _update_ema(self) -> None:
        ema, g = self.ema.tensors(), self.g.tensors()
        names = self.g.param_names
        # Fruits step in lock-step, so fruit 0's counter is every fruit's; computed on the device (graph-safe).
        weight = 1.0 - gm.ema_decay_at(self.config.ema_decay, self.g.counters()[0][0])
        torch._foreach_lerp_([ema[n] for n in names], [g[n].detach() for n in names], weight)
        for name in self.g.plain_keys:
            if name not in names:
                ema[name].copy_(g[name])

    @torch.no_grad()
    def generate(self, noise: torch.Tensor, use_ema: bool = True) -> torch.Tensor:
        """Images (F, B, 1, R, R) in [-1, 1] from noise (F, B, nz), eval-mode BN, no gradients, in passes of
        gm.generate_batch images per fruit: 7 fruits x 1000 fakes at 64 px in one pass held 7 GB per layer."""
        stack = self.ema if (use_ema and self.ema is not None) else self.g
        step = gm.generate_batch(self.config.resolution, noise.shape[0])
        parts = []
        with self._autocast():
            for s in range(0, max(noise.shape[1], 1), step):
                z = noise[:, s:s + step].to(self.device)
                parts.append(self._generate(stack.tensors(), z, False).float())            # (b, F, R, R)
        return torch.cat(parts).transpose(0, 1).unsqueeze(2).contiguous()

    # ------------------------------------------------------------------ per-fruit import/export
    def fruit_state_dicts(self, i: int) -> dict:
        """Fruit i's weights in plain gan_model.Generator / Discriminator state_dict format."""
        return {"generator": self.g.fruit_state_dict(i), "discriminator": self.d.fruit_state_dict(i),
                "ema": None if self.ema is None else self.ema.fruit_state_dict(i)}

    def load_fruit_state_dicts(self, i: int, states: Mapping) -> None:
        self.g.load_fruit_state_dict(i, states["generator"])
        self.d.load_fruit_state_dict(i, states["discriminator"])
        if self.ema is not None:
            ema = states.get("ema")
            self.ema.load_fruit_state_dict(i, ema if ema is not None else states["generator"])

    def fruit_optimizer_states(self, i: int) -> dict:
        """Fruit i's Adam state: {"generator"|"discriminator": {param name: {"step","exp_avg","exp_avg_sq"}}}."""
        fruit_copy = lambda t: t[i].detach().cpu().clone()
        return {kind: _adam_moments(opt, zip(stack.param_names, stack.stacked_params()), fruit_copy)
                for kind, stack, opt in (("generator", self.g, self.g_optimizer),
                                         ("discriminator", self.d, self.d_optimizer))}

    @torch.no_grad()
    def load_fruit_optimizer_states(self, i: int, states: Mapping) -> None:
        """Set fruit i's Adam moments; every fruit of a group must be at the same Adam step."""
        for kind, stack, opt in (("generator", self.g, self.g_optimizer), ("discriminator", self.d, self.d_optimizer)):
            for name, p in zip(stack.param_names, stack.stacked_params()):
                src = states[kind].get(name)
                if src is None:
                    continue
                step_device = p.device if (opt.defaults["capturable"] or opt.defaults["fused"]) else "cpu"
                st = self._adam_state(opt, p, src["step"], step_device)
                if float(st["step"]) != float(src["step"]):
                    raise ValueError(f"fruit {i} is at Adam step {src['step']}, its group at {float(st['step'])}")
                st["exp_avg"][i].copy_(src["exp_avg"])
                st["exp_avg_sq"][i].copy_(src["exp_avg_sq"])
        self._graphs = {}                  # captured with the old state tensors


def _adam_moments(opt: torch.optim.Optimizer, named_params, pick=lambda t: t) -> dict:
    """Adam's state keyed by parameter name, {name: {"step", "exp_avg", "exp_avg_sq"}}, ``pick`` of each moment."""
    return {name: {"step": float(st["step"]), "exp_avg": pick(st["exp_avg"]), "exp_avg_sq": pick(st["exp_avg_sq"])}
            for name, p in named_params if (st := opt.state.get(p))}
