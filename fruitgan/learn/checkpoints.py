"""What a training run saves to continue (checkpoints) and to draw (network files), and how it is restored.
The files and their formats: fruitgan.models.checkpoint_files. The data order needs no saving: training_data
derives it from the step count."""
from __future__ import annotations

import copy
from typing import Dict, List

import torch

from gan_model import Discriminator, GANConfig, Generator, network_payload
from fruitgan.models.checkpoint_files import CHECKPOINT_FORMAT, CheckpointFiles, drawing_state
from fruitgan.models.folder import ModelFolder
from fruitgan.util.user_io import UserError


class TrainingCheckpoints:
    """Saves and restores the networks, optimisers and random streams of a run's groups of fruits.
    ``groups``: the fruits of each GroupedGAN in ``models``; ``states``: {fruit: FruitState}."""

    def __init__(self, store: ModelFolder, gan_config: GANConfig, groups: List[List[str]], models: list,
                 states: dict, device: torch.device, keep_every: int):
        self.store, self.gan_config, self.groups, self.models = store, gan_config, groups, models
        self.states, self.device, self.keep_every = states, device, keep_every
        self.files = CheckpointFiles(store)     # writes them: checkpoints off the training thread

    def _where(self):
        """(group index, position in it, fruit) of every fruit."""
        return [(gi, i, f) for gi, g in enumerate(self.groups) for i, f in enumerate(g)]

    def _plain_network(self, cls, state: dict):
        """A gan_model Generator/Discriminator holding ``state``, built under a forked RNG: its throw-away init
        must not move the training's random stream (a resume would then differ from a run that never stopped)."""
        with torch.random.fork_rng(devices=[]):
            net = cls(self.gan_config)
        net.load_state_dict(state)
        return net

    def save_generator(self, gi: int, i: int, fruit: str, epoch: int, best: bool = False, **extra) -> None:
        state, averaged = drawing_state(self.models[gi].fruit_state_dicts(i))
        g = self._plain_network(Generator, state)
        self.files.write_network(network_payload(g, self.gan_config, "generator", fruit=fruit, epoch=epoch,
                                                 averaged=averaged, **extra), best=best)

    def save_networks(self, epoch: int) -> None:
        """generator_<fruit>.pt and discriminator_<fruit>.pt: the latest weights, rebuildable alone."""
        for gi, i, f in self._where():
            self.save_generator(gi, i, f, epoch)
            d = self._plain_network(Discriminator, self.models[gi].fruit_state_dicts(i)["discriminator"])
            self.files.write_network(network_payload(d, self.gan_config, "discriminator", fruit=f, epoch=epoch))

    def save(self, epoch: int) -> None:
        """Everything needed to continue after ``epoch``: snapshotted now, written by the writer's thread."""
        self.files.save(self.snapshot(epoch), keep=bool(self.keep_every and epoch % self.keep_every == 0))

    def wait(self) -> None:
        self.files.wait()

    def snapshot(self, epoch: int) -> dict:
        states = self.states.items()
        return {
            "format": CHECKPOINT_FORMAT, "epoch": epoch, "gan_config": self.gan_config.to_dict(),
            # Per fruit, in the plain networks' format: a checkpoint does not depend on how fruits were grouped.
            "fruits": {f: {**self.models[gi].fruit_state_dicts(i), "optimizers": self.models[gi].fruit_optimizer_states(i)}
                       for gi, i, f in self._where()},
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                    "fruits": {f: {"noise": s.noise_gen.get_state()} for f, s in states}},
            # copies: training appends to these while the writer's thread pickles them
            "history": copy.deepcopy({f: s.history for f, s in states}),
            "cost": copy.deepcopy({f: s.cost for f, s in states}),
            "best_score": {f: s.best_score for f, s in states},
        }

    def load(self, fruits: List[str], log) -> int:
        """Restore the latest checkpoint; returns the next epoch to train (1 when there is none yet)."""
        store = self.store
        if not store.checkpoint_path("latest").exists() and not store.kept_checkpoints():
            # Stopped before its first epoch ended (only the config was written): start over, same settings.
            log(f"model {store.name!r} has no checkpoint yet: starting at epoch 1 with its saved settings")
            return 1
        ckpt = self.files.read_resume(map_location=self.device)
        missing = [f for f in fruits if f not in ckpt["fruits"]]
        if missing:
            raise UserError(f"checkpoint {store.checkpoint_path('latest').name} has no {', '.join(missing)}; "
                            "resume with the same fruits")
        for gi, i, f in self._where():
            self.models[gi].load_fruit_state_dicts(i, ckpt["fruits"][f])
            self.models[gi].load_fruit_optimizer_states(i, ckpt["fruits"][f]["optimizers"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if self.device.type == "cuda" and ckpt["rng"]["cuda"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        for f, s in self.states.items():
            self._restore_noise(s, ckpt["rng"]["fruits"][f])
            s.history, s.cost, s.best_score = ckpt["history"][f], ckpt["cost"][f], ckpt["best_score"][f]
        return int(ckpt["epoch"]) + 1

    def _restore_noise(self, state, saved: Dict[str, torch.Tensor]) -> None:
        """The fruit's generator lives on the training device: a CPU run's state does not fit a GPU's."""
        try:
            state.noise_gen.set_state(saved["noise"].cpu())
        except RuntimeError:
            raise UserError(f"checkpoint of model {self.store.name!r} was written on another kind of device "
                            f"than {self.device.type}; resume it with the --device it was trained on") from None
