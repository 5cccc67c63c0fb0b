"""Train one DCGAN per fruit on a packed dataset version: prompts step by step, or flags.

    python train_gan.py                                  # asks: dataset version, model name, epochs, ...
    python train_gan.py --yes --dataset-version 1 --model-name v1 --epochs 400
    python train_gan.py --yes --model-name v1 --resume   # continue an interrupted model
    torchrun --nproc-per-node 2 train_gan.py --yes ...   # fruits shared among the processes

Writes models/model_<name>/ (see README: "The models tree")."""
from __future__ import annotations

if __name__ == "__main__":   # first of all: Ctrl+C while the imports below load exits 130 too
    from fruitgan.util.user_io import interrupt_exits_130
    interrupt_exits_130()

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from fruitgan.models.folder import ModelFolder
from fruitgan.models.may_write import check_may_write
from fruitgan.util import settings as st
from fruitgan.util.safe_files import default_workdir
from fruitgan.util.user_io import ArgumentParser, Prompter, UserError, run_main

# The setting flags in the order --help lists them (--no-eval between the two groups); settings.py declares each.
VALUE_FLAGS = (st.DATASET_VERSION, st.MODEL_NAME, st.EPOCHS, st.BATCH_SIZE, st.LR, st.DESCRIPTION, st.DEVICE,
               st.FRUIT_LIST, st.SEED, st.PRECISION, st.SCHEDULE, st.MILESTONES, st.KEEP_CHECKPOINT_EVERY)
LATER_VALUE_FLAGS = (st.EVAL_SAMPLES, st.EMA_DECAY, st.DIFF_AUGMENT, st.AUGMENT_P, st.G_CHANNELS, st.D_CHANNELS, st.BETA1, st.BETA2,
                     st.R1_GAMMA, st.STEPS_PER_EPOCH, st.STOP_AFTER_EPOCHS, st.CHECKPOINT_MINUTES)
SWITCHES = (st.COMPILE, st.CUDA_GRAPH)
PROMPTED = (st.EPOCHS, st.BATCH_SIZE, st.LR, st.DESCRIPTION, st.DEVICE)   # asked after version and model name


def build_parser() -> argparse.ArgumentParser:
    """Every setting flag has the argparse default None, so a flag the user gave can be told apart."""
    p = ArgumentParser(description="Train one GAN per fruit (MultiFruitGANTrainer).")
    p.add_argument("--workdir", type=Path, default=None, help="folder holding npzData/ and models/ (default: here)")
    for setting in VALUE_FLAGS:
        setting.add_to(p)
    st.add_switch(p, st.EVALUATE)
    for setting in LATER_VALUE_FLAGS:
        setting.add_to(p)
    for setting in SWITCHES:
        st.add_switch(p, setting)
    p.add_argument("--resume", action="store_true",
                   help="continue an existing model where it stopped, with its saved settings (--epochs N extends it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model of the same name")
    p.add_argument("--yes", action="store_true", help="never prompt: defaults for what is not given")
    return p


def given_settings(args: argparse.Namespace) -> dict:
    """{config field: value} of the setting flags the user gave (None: not given)."""
    flags = VALUE_FLAGS + LATER_VALUE_FLAGS + SWITCHES
    given = {s.field: getattr(args, s.field) for s in flags if getattr(args, s.field) is not None}
    if args.no_eval:
        given["evaluate"] = False
    return given


def newest_version(workdir: Path, versions: dict) -> str:
    import data_loader

    def mtime(v: str) -> float:
        return max(data_loader.npz_path(workdir, f, v).stat().st_mtime for f in versions[v])

    return max(versions, key=mtime)


def resume_settings(args: argparse.Namespace, prompter: Prompter, workdir: Path, is_main: bool):
    """The saved run's settings (config.Resumed), with what the flags given may change (or a one-line refusal)."""
    from fruitgan.learn.config import load_resume

    name = args.model_name or prompter.ask("Model name to resume", st.MODEL_NAME.default, st.MODEL_NAME.parse,
                                           flag="--model-name NAME")
    folder = ModelFolder.in_workdir(workdir, name)
    if is_main:   # under torchrun rank 0 decides (another rank would see rank 0's own lock)
        check_may_write(folder, resume=True)
    changes = given_settings(args)
    # A limit on this call's epochs, not a setting of the run: a resume without it trains to the end.
    changes["stop_after_epochs"] = args.stop_after_epochs
    return load_resume(folder, changes)


def ask_settings(args: argparse.Namespace, prompter: Prompter, workdir: Path, is_main: bool = True):
    """Fill every setting from its flag, else from a prompt (or its default with --yes): a TrainConfig, or
    with --resume the saved run's config.Resumed."""
    import data_loader
    from fruitgan.learn.config import TrainConfig

    if args.resume:  # everything comes from the saved configuration
        return resume_settings(args, prompter, workdir, is_main)
    versions = data_loader.list_versions(workdir)
    if not versions:
        raise UserError(f"no dataset in {workdir / 'npzData'}; run rawDataToImage.py then imageToNPZ.py first")
    if args.dataset_version is None:
        print("dataset versions:")
        for v, fruits in sorted(versions.items()):
            print(f"  {v:<12} {', '.join(fruits)}")

    def parse_version(text: str) -> str:
        if text not in versions:
            raise ValueError(f"no version {text!r}; there are: {', '.join(sorted(versions))}")
        return text

    def parse_model(text: str) -> str:
        name = st.MODEL_NAME.parse(text)
        if is_main:   # refused: asked again (with --yes: one line); under torchrun rank 0 decides
            check_may_write(ModelFolder.in_workdir(workdir, name), overwrite=args.overwrite)
        return name

    version = args.dataset_version
    if version is None:
        version = prompter.ask(st.DATASET_VERSION.question, newest_version(workdir, versions), parse_version,
                               flag="--dataset-version DATASET_VERSION")
    elif version not in versions:
        raise UserError(f"no dataset version {version!r} in {workdir / 'npzData'}; there are: "
                        f"{', '.join(sorted(versions))}")
    values = {**given_settings(args), "dataset_version": version}   # each asked only when not given
    if "model_name" in values:      # a name given as a flag: refused before any further prompt
        parse_model(values["model_name"])
    else:
        values["model_name"] = st.MODEL_NAME.ask(prompter, parse=parse_model)
    for setting in PROMPTED:
        if setting.field not in values:
            values[setting.field] = setting.ask(prompter, parse=parse_device if setting is st.DEVICE else None)
    return TrainConfig(**values)


def parse_device(text: str) -> str:
    """A device this machine has: 'cuda' without a GPU is refused at the prompt, not after every question."""
    import torch

    name = st.DEVICE.parse(text)
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("this machine has no CUDA GPU; answer cpu or auto")
    return name


def init_distributed():
    """Under torchrun: join the process group (gloo on CPU, nccl on GPUs) and return DistInfo."""
    from fruitgan.learn.config import DistInfo

    info = DistInfo.from_env()
    if info.world > 1:
        import torch
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = (args.workdir or default_workdir()).resolve()
    dist_info = init_distributed()
    if dist_info.world > 1 and not args.yes:
        print("note: under torchrun the processes cannot share prompts; using flags and defaults (--yes)")
        args.yes = True
    prompter = Prompter(assume_yes=args.yes)
    from gan_trainer import MultiFruitGANTrainer

    try:
        chosen = ask_settings(args, prompter, workdir, dist_info.is_main)   # the folder may be written: checked
        config = chosen.config if args.resume else chosen
        log = print if dist_info.is_main else (lambda msg: print(f"[rank {dist_info.rank}] {msg}"))
        trainer = MultiFruitGANTrainer(config, workdir, overwrite=args.overwrite, resume=args.resume and chosen,
                                       log=log, dist=dist_info)
        trainer.train()
    finally:
        if dist_info.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
