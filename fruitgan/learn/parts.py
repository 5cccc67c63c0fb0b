"""The parts of a training run, built from its settings before the first epoch: the fruits' data, streams and
states, the networks, and what evaluates, checkpoints, estimates and records it. gan_trainer.py holds the loop;
each part gets the values it needs (never the trainer)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

import cost_analysis_training as cost_mod
import data_loader
from fruitgan.learn import augment
from fruitgan.learn.batches import FruitStream, draw_step_inputs, steps_per_epoch
from fruitgan.learn.checkpoints import TrainingCheckpoints
from fruitgan.learn.config import check_bounds, fruit_seed
from fruitgan.learn.estimate import RunEstimate
from fruitgan.learn.grouped import GroupedGAN, tune_cpu_allocator
from fruitgan.learn.milestones import MilestoneQuality
from fruitgan.learn.records import RunRecords, dataset_info, new_history, resolved_settings
from fruitgan.util import pictures

GRID_SIDE = 8                     # fixed-noise progress grids are 8 x 8 images
GRID_PAD = 2                      # pixels between grid cells
GRID_GUTTER = 128                 # grey between the black cells


def image_grid(images: torch.Tensor, side: int = GRID_SIDE, pad: int = GRID_PAD):
    """(N,1,R,R) in [-1,1] -> a PIL grayscale grid image, ``side`` per row, grey gutters between the tiles."""
    return pictures.image_grid(pictures.to_uint8(images), min(side, images.shape[0]), pad, GRID_GUTTER)


@dataclass
class FruitState:
    """Per-fruit bookkeeping that is not a tensor of the networks."""

    fruit: str
    noise_gen: torch.Generator           # this fruit's noise, dropout masks, DiffAugment (on the device)
    fixed_noise: torch.Tensor            # (GRID_SIDE^2, nz): the same grid at every milestone
    history: dict = field(default_factory=dict)
    cost: Optional[dict] = None          # cost section so far (cost_analysis_training)
    best_score: float = -math.inf


@dataclass
class RunData:
    """What this rank trains: every fruit's dataset, its own fruits, their streams, states and groups."""

    datasets: dict                       # every fruit of the run (all ranks): data_loader's datasets
    fruits: List[str]                    # this rank's share
    resolution: int
    gan_config: object                   # gan_model.GANConfig at the data's resolution
    steps_per_epoch: int
    groups: List[List[str]]              # fruits stepped together
    streams: Dict[str, FruitStream]
    states: Dict[str, FruitState]

    def batches(self, group: List[str], epoch: int, batch: int, device):
        """Yield (real (F,b,1,R,R), noise (F,b,nz), random) for each step of ``epoch`` of a group, each fruit
        from its own stream: everything drawn and indexed on the device, no host work inside the epoch."""
        first = (epoch - 1) * self.steps_per_epoch
        for step in range(first, first + self.steps_per_epoch):
            real = torch.stack([self.streams[f].images(step) for f in group])
            drawn = [draw_step_inputs(self.gan_config, batch, self.states[f].noise_gen, device) for f in group]
            yield real, torch.stack([n for n, _ in drawn]), augment.stack_fruits([r for _, r in drawn])


def costs(pricing_path, tracker: Optional[cost_mod.CostTracker]) -> tuple:
    """The prices (render_pricing_config.json, or ``pricing_path``) and the cost tracker charging at them."""
    pricing = cost_mod.load_pricing(pricing_path)
    return pricing, tracker or cost_mod.CostTracker(pricing)


def load_data(cfg, workdir, dist, device: torch.device) -> RunData:
    datasets = data_loader.load_version(workdir, cfg.dataset_version, cfg.fruits)
    fruits = dist.share(list(datasets))
    resolution = next(iter(datasets.values())).resolution
    gan_config = cfg.gan_config(resolution)
    check_bounds(cfg)
    # Every rank takes the same steps per epoch: the largest training part of the whole run sets it.
    steps = steps_per_epoch(cfg.steps_per_epoch, [d.train_index.numel() for d in datasets.values()], cfg.batch_size)
    groups = [[f] for f in fruits] if cfg.schedule == "sequential" else [list(fruits)]
    streams, states = {}, {}
    for f in fruits:
        s = fruit_seed(cfg.seed, f)
        # Only the training part, kept uint8: held-out drawings (and copies of them) are never trained on.
        streams[f] = FruitStream(datasets[f].pixels, datasets[f].train_index, s, cfg.batch_size, device)
        # On the training device, so no step waits for a host-to-device copy (on a CPU: like torch's default
        # generator seeded alike, so seeded runs are reproducible).
        fixed = torch.randn(GRID_SIDE * GRID_SIDE, gan_config.noise_dim, generator=torch.Generator().manual_seed(s + 2))
        states[f] = FruitState(f, torch.Generator(device=device).manual_seed(s + 1), fixed,
                               new_history(cfg, f, datasets[f], steps))
    return RunData(datasets, fruits, resolution, gan_config, steps, groups, streams, states)


def build_models(cfg, data: RunData, device: torch.device) -> List[GroupedGAN]:
    torch.manual_seed(cfg.seed)    # torch's own stream (each fruit's weights come from its own seed)
    if device.type == "cpu":
        tune_cpu_allocator()       # each step frees and re-allocates the same big buffers
    cuda_graph = cfg.cuda_graph and device.type == "cuda"
    return [GroupedGAN(data.gan_config, len(g), device=device, precision=cfg.precision, compile=cfg.compile,
                       cuda_graph=cuda_graph, init_seeds=[fruit_seed(cfg.seed, f) for f in g]) for g in data.groups]


def checkpoints(store, cfg, data: RunData, models: list, device) -> TrainingCheckpoints:
    return TrainingCheckpoints(store, data.gan_config, data.groups, models, data.states, device,
                               cfg.keep_checkpoint_every)


def records(store, cfg, data: RunData, dist, workdir, device, requested_precision: str, pricing) -> RunRecords:
    settings = resolved_settings(cfg, data, device, requested_precision, dist.world)
    return RunRecords(store, dist, workdir, settings, dataset_info(cfg.dataset_version, data), data.states, pricing)


def estimate(cfg, data: RunData, models: list, device, milestones: set, quality, grids, ckpts) -> RunEstimate:
    return RunEstimate(groups=data.groups, models=models, streams=data.streams, cfg=cfg, gan_config=data.gan_config,
                       steps_per_epoch=data.steps_per_epoch, device=device, milestones=milestones, quality=quality,
                       grids=grids, history=data.states[data.fruits[0]].history, snapshot=ckpts.snapshot)


def quality(cfg, workdir, data: RunData, device, log) -> MilestoneQuality:
    return MilestoneQuality(workdir, cfg.dataset_version, data.datasets, data.fruits, device, cfg.seed,
                            cfg.eval_samples, log, cfg.evaluate)
