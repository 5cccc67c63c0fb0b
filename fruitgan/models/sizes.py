"""How big a model folder gets: predicted from the networks' sizes before training (refused in one line when the
disk cannot hold it), and measured part by part after it. The .pt files are tensors (their bytes follow from the
parameter counts) plus torch.save's framing; images and records are bounded by their pixels and rows."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict

import torch

from gan_model import Discriminator, GANConfig, Generator
from fruitgan.models.folder import BEST_DIR, CHECKPOINTS_DIR, EPOCH_FILE, LATEST_FILE, ModelFolder
from fruitgan.util.safe_files import BYTES_PER_MB
from fruitgan.util.user_io import UserError

# torch.save's framing per tensor (zip record, alignment, pickle): 317-350 bytes measured with torch 2.x.
TENSOR_FRAMING_BYTES = 400
PLOT_BYTES = 150_000           # one info/training_history_*.png (92-120 KB measured on a tiny run)
EPOCH_ROW_BYTES = 400          # one epoch's row of a fruit's history JSON (histories are kept twice: JSON, latest.pt)
MILESTONE_ROW_BYTES = 2_000    # one milestone's quality figures of a fruit
RECORDS_BYTES = 100_000        # config, summary, cost report, description, index entry
ADAM_MOMENTS = 2               # exp_avg and exp_avg_sq per parameter
PARTS = ("resume state", "kept epochs", "networks", "best", "images and records")


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() + TENSOR_FRAMING_BYTES for t in tensors)


def network_bytes(cfg: GANConfig) -> Dict[str, int]:
    """{"g_state", "d_state", "g_params", "d_params"}: bytes of each network's state_dict and parameters."""
    with torch.random.fork_rng(devices=[]):         # building them must not move a run's random stream
        g, d = Generator(cfg), Discriminator(cfg)
    return {"g_state": _tensor_bytes(g.state_dict().values()), "d_state": _tensor_bytes(d.state_dict().values()),
            "g_params": _tensor_bytes(g.parameters()), "d_params": _tensor_bytes(d.parameters())}


def predicted_bytes(cfg: GANConfig, fruits: int, epochs: int, keep_every: int, milestones: int, best: bool,
                    grid_pixels: int) -> Dict[str, int]:
    """What a finished run keeps, {part: bytes} over PARTS: a kept epoch every ``keep_every`` (0: none), holding
    the one generator that draws (the last epoch has none: its network files hold it), ``milestones`` progress
    grids of ``grid_pixels`` pixels per fruit, a best/ generator when ``best``."""
    n = network_bytes(cfg)
    averaged = cfg.ema_decay > 0
    latest = (n["g_state"] * (2 if averaged else 1) + n["d_state"]
              + ADAM_MOMENTS * (n["g_params"] + n["d_params"]) + epochs * EPOCH_ROW_BYTES)
    kept = len(range(keep_every, epochs, keep_every)) if keep_every else 0
    records = (epochs * EPOCH_ROW_BYTES + milestones * (grid_pixels + MILESTONE_ROW_BYTES) + PLOT_BYTES)
    return {"resume state": fruits * latest, "kept epochs": kept * fruits * n["g_state"],
            "networks": fruits * (n["g_state"] + n["d_state"]), "best": fruits * n["g_state"] if best else 0,
            "images and records": fruits * records + PLOT_BYTES + RECORDS_BYTES}


def _part_of(rel: Path) -> str:
    if rel.parts[0] == CHECKPOINTS_DIR and LATEST_FILE.match(rel.name):
        return "resume state"
    if rel.parts[0] == CHECKPOINTS_DIR and EPOCH_FILE.match(rel.name):
        return "kept epochs"
    if rel.parts[0] == BEST_DIR:
        return "best"
    return "networks" if len(rel.parts) == 1 and rel.suffix == ".pt" else "images and records"


def kept_bytes(folder: ModelFolder) -> Dict[str, int]:
    """{part: bytes} of what ``folder`` holds now (regular files; links are not followed)."""
    parts = dict.fromkeys(PARTS, 0)
    for root, _dirs, files in os.walk(folder.path):
        for name in files:
            path = Path(root) / name
            try:
                if not path.is_symlink():
                    parts[_part_of(path.relative_to(folder.path))] += path.lstat().st_size
            except OSError:
                continue                          # removed while walking
    return parts


def mb(size: int) -> str:
    return f"{size / BYTES_PER_MB:.1f} MB"


def kept_line(folder: ModelFolder) -> str:
    """The line that ends a run: what the model folder keeps, by part, and its size."""
    parts = kept_bytes(folder)
    epochs = len(folder.kept_checkpoints())
    shown = ", ".join(f"{part}{f' ({epochs})' if part == 'kept epochs' else ''} {mb(size)}"
                      for part, size in parts.items() if size)
    return f"kept {mb(sum(parts.values()))} in {folder.path}: {shown}"


def check_room(folder: ModelFolder, predicted: Dict[str, int], keep_every: int) -> None:
    """Refuse, in one line, a run whose folder would not fit on its disk: what it still needs (the predicted
    total less what the folder holds now, plus room for one resume state's temporary copy) against what is free."""
    held = sum(kept_bytes(folder).values()) if folder.path.is_dir() else 0
    needed = max(0, sum(predicted.values()) - held) + predicted["resume state"]
    probe = folder.path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise UserError(f"model {folder.name} needs {mb(needed)} ({needed:,} bytes) on disk but {probe} has "
                        f"{mb(free)} ({free:,} bytes) free; free some space or keep fewer checkpoints with "
                        f"--keep-checkpoint-every (now {keep_every}; 0 keeps none)")
