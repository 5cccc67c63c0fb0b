"""A training run's checkpoints and network files: what is saved to continue, and how it is restored.

A checkpoint holds, per fruit in the plain networks' state_dict format (independent of how fruits were
grouped): both networks, the moving average, both Adam states; plus every random stream (torch's and
each fruit's own noise generator), the histories, the cost so far and each fruit's best score. It is
snapshotted to CPU copies at the end of its epoch; fruitgan.models.checkpoint_files writes it (latest.pt in
full, a kept epoch with only what drawing needs) and reads it back. The data order needs no saving:
training_data derives it from the step count.

The network files (generator_<fruit>.pt, discriminator_<fruit>.pt, best/generator_<fruit>.pt) are
gan_model payloads: a state_dict and the config that rebuilds it, loadable with weights_only=True; a
generator file holds the one generator that draws (the moving average when the run keeps one).
"""
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

    ``groups``: the fruits of each GroupedGAN in ``models``; ``states``: {fruit: FruitState}.
    """

    def __init__(self, store: ModelFolder, gan_config: GANConfig, groups: List[List[str]], models: list,
                 states: dict, device: torch.device, keep_every: int):
        self.store, self.gan_config, self.groups, self.models = store, gan_config, groups, models
        self.states, self.device, self.keep_every = states, device, keep_every
        self.files = CheckpointFiles(store)     # writes them: checkpoints off the training thread

    def _where(self):
        """(group index, position in it, fruit) of every fruit."""
        return [(gi, i, f) for gi, g in enumerate(self.groups) for i, f in enumerate(g)]

    def _plain_network(self, cls, state: dict):
        """A gan_model Generator/Discriminator holding ``state``. Built under a forked RNG: its throw-away
        initialisation must not move the training's random stream (a resume would then differ from a run
        that never stopped)."""
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
        """Everything needed to continue, as of the end of ``epoch``: snapshotted now (so the file is this
        epoch's whatever training does next), written by the writer's thread (one at a time, atomically)."""
        self.files.save(self.snapshot(epoch), keep=bool(self.keep_every and epoch % self.keep_every == 0))

    def wait(self) -> None:
        """Block until the write in progress is on disk (its error raised here)."""
        self.files.wait()

    def snapshot(self, epoch: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "gan_config": self.gan_config.to_dict(),
            # Per fruit, in the plain networks' format: a checkpoint does not depend on how fruits were grouped.
            "fruits": {f: {**self.models[gi].fruit_state_dicts(i), "optimizers": self.models[gi].fruit_optimizer_states(i)}
                       for gi, i, f in self._where()},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "fruits": {f: {"noise": s.noise_gen.get_state()} for f, s in self.states.items()},
            },
            # copies: training appends to these while the writer's thread pickles them
            "history": copy.deepcopy({f: s.history for f, s in self.states.items()}),
            "cost": copy.deepcopy({f: s.cost for f, s in self.states.items()}),
            "best_score": {f: s.best_score for f, s in self.states.items()},
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
            s.history = ckpt["history"][f]
            s.cost = ckpt["cost"][f]
            s.best_score = ckpt["best_score"][f]
        return int(ckpt["epoch"]) + 1

    def _restore_noise(self, state, saved: Dict[str, torch.Tensor]) -> None:
        """The fruit's generator lives on the training device: a CPU run's state does not fit a GPU's."""
        try:
            state.noise_gen.set_state(saved["noise"].cpu())
        except RuntimeError:
            raise UserError(f"checkpoint of model {self.store.name!r} was written on another kind of device "
                            f"than {self.device.type}; resume it with the --device it was trained on") from None
