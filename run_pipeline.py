"""The whole pipeline on the bundled real sample, without a single prompt (the README's first command).

    python run_pipeline.py                 # strokes -> images -> NPZ -> one GAN per fruit -> new images
    python run_pipeline.py --epochs 400    # a longer run (same steps)

It runs the project's own scripts with flags, printing each command so that you can rerun or change any step by
hand. Its settings (PipelineConfig) finish in about 7 minutes on a 2-core CPU without a GPU; a full run uses the
scripts' defaults (64 px, 400 epochs). It writes only its own names ("quickstart" by default), replaced each run."""
from __future__ import annotations

if __name__ == "__main__":   # first of all: Ctrl+C while the imports below load exits 130 too
    from fruitgan.util.user_io import interrupt_exits_130
    interrupt_exits_130()

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from fruitgan.util import settings as st
from fruitgan.util.safe_files import FRUITS, check_name, default_workdir
from fruitgan.util.user_io import ArgumentParser, UserError, cli_value, run_main

HERE = Path(__file__).resolve().parent


@dataclass
class PipelineConfig:
    """The quick run's settings (printed before it starts)."""

    workdir: Path                 # holds rawData/ imageData/ npzData/ models/
    name: str = "quickstart"      # dataset version and model name it (re)writes
    resolution: int = 28          # small images keep a CPU run short
    # Images per fruit: the real drawings, then augmented copies up to this. 160 is the least that gives apple
    # and banana (1000 and 4000 bitmaps) a held-out split (80 drawings), so the quick run shows the
    # two-sample test for them; the other fruits have too few real drawings and say so.
    count: int = 160
    epochs: int = 100             # 500 steps per fruit: the README's quick runs recognised 61-95% of fakes by then
    batch_size: int = 32          # five steps per epoch per fruit at count 160
    num_images: int = 16          # images generated per fruit at the end
    seed: int = st.SEED.default
    fruits: List[str] = field(default_factory=lambda: list(FRUITS))   # fruits to run through every step


def commands(cfg: PipelineConfig) -> List[List[str]]:
    """The project's own commands, in pipeline order."""
    py, w, fruits = sys.executable, str(cfg.workdir), ",".join(cfg.fruits)
    out = cfg.workdir / "outputs"
    steps = [
        [py, str(HERE / "rawDataToImage.py"), "--workdir", w, "--yes", "--overwrite", "--version", cfg.name,
         "--resolution", str(cfg.resolution), "--count", str(cfg.count), "--augment", "--seed", str(cfg.seed),
         "--fruits", fruits],
        [py, str(HERE / "imageToNPZ.py"), "--workdir", w, "--yes", "--overwrite", "--version", cfg.name,
         "--fruits", fruits],
        [py, str(HERE / "train_gan.py"), "--workdir", w, "--yes", "--overwrite", "--dataset-version", cfg.name,
         "--model-name", cfg.name, "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size),
         "--seed", str(cfg.seed), "--fruits", fruits,
         "--description", "run_pipeline.py quick run on the bundled real sample"],
    ]
    for fruit in cfg.fruits:
        steps.append([py, str(HERE / "generate_images.py"), cfg.name, fruit, "--workdir", w,
                      "--num-images", str(cfg.num_images), "--seed", str(cfg.seed), "--checkpoint", "best",
                      "--save", str(out / f"{cfg.name}_{fruit}.png")])
    return steps


def parse_args(argv: Optional[Sequence[str]]) -> PipelineConfig:
    """The quick run's own defaults (PipelineConfig), the scripts' bounds and parsers (settings.py)."""
    p = ArgumentParser(description="Run the whole pipeline on the bundled sample, no prompts.")
    p.add_argument("--workdir", type=Path, default=None, help="default: this folder")
    p.add_argument("--name", type=cli_value(lambda s: check_name(s, "name"), "--name"), default=PipelineConfig.name,
                   help=f"dataset version and model name it (re)writes (default: {PipelineConfig.name})")
    for setting in (st.RESOLUTION, st.COUNT, st.EPOCHS, st.BATCH_SIZE, st.SEED):
        setting.add_to(p, default=getattr(PipelineConfig, setting.field))
    st.FRUIT_LIST.add_to(p, default=list(FRUITS), shown="all seven")
    a = p.parse_args(argv)
    return PipelineConfig(**{**vars(a), "workdir": (a.workdir or default_workdir()).resolve()})


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = parse_args(argv)
    print(f"pipeline settings: {cfg}")
    t0 = time.perf_counter()
    for cmd in commands(cfg):
        shown = " ".join(shlex.quote(c) for c in [Path(cmd[0]).name] + [Path(cmd[1]).name] + cmd[2:])
        print(f"\n$ {shown}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            raise UserError(f"step failed: {Path(cmd[1]).name} (its message is above); fix it and rerun")
    from fruitgan.models.folder import ModelFolder

    print(f"\npipeline done in {(time.perf_counter() - t0) / 60:.1f} min: model in "
          f"{ModelFolder.in_workdir(cfg.workdir, cfg.name).path}, images in {cfg.workdir / 'outputs'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
