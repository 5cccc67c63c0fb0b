"""Train one DCGAN per fruit on a packed dataset version: prompts step by step, or flags.

    python train_gan.py                                  # asks: dataset version, model name, epochs, ...
    python train_gan.py --yes --dataset-version 1 --model-name v1 --epochs 400
    python train_gan.py --yes --model-name v1 --resume   # continue an interrupted model
    torchrun --nproc-per-node 2 train_gan.py --yes ...   # fruits shared among the processes

Writes models/model_<name>/ (see README: "The models tree").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from safe_files import FRUITS, check_name, default_workdir
from user_io import (Prompter, UserError, choice_of, cli_value, float_in_range, int_in_range, list_of,
                     run_main)

MAX_EPOCHS = 100_000
MAX_BATCH = 4096
DEVICES = ("auto", "cpu", "cuda")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train one GAN per fruit (MultiFruitGANTrainer).")
    p.add_argument("--workdir", type=Path, default=None, help="folder holding npzData/ and models/ (default: here)")
    p.add_argument("--dataset-version", help="dataset version to train on (default: the newest)")
    p.add_argument("--model-name", type=cli_value(lambda s: check_name(s, "model name"), "--model-name"),
                   help="models/model_<name>/ (default: v1)")
    p.add_argument("--epochs", type=cli_value(int_in_range(1, MAX_EPOCHS), "--epochs"), help="default: 400")
    p.add_argument("--batch-size", type=cli_value(int_in_range(1, MAX_BATCH), "--batch-size"), help="default: 64")
    p.add_argument("--lr", type=cli_value(float_in_range(1e-7, 1.0), "--lr"), help="learning rate (default 0.0002)")
    p.add_argument("--description", help="free text saved in info/description.txt")
    p.add_argument("--device", type=cli_value(choice_of(DEVICES), "--device"), help="auto (default), cpu or cuda")
    p.add_argument("--fruits", type=cli_value(list_of(FRUITS, "fruit"), "--fruits"),
                   help="comma-separated fruits (default: all of the dataset version)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 autocast helps on GPUs")
    p.add_argument("--schedule", choices=("together", "sequential"), default="together",
                   help="step same-size fruits together (fast, default) or one after another")
    p.add_argument("--milestones", type=cli_value(_parse_milestones, "--milestones"), default=None,
                   help="epochs that get a progress grid, e.g. 1,10,20,30,40,100,200,300,400 (the last is added)")
    p.add_argument("--keep-checkpoint-every", type=int, default=50, help="keep checkpoints/epoch_NNNN.pt every N")
    p.add_argument("--no-eval", action="store_true", help="skip quality metrics at milestones")
    p.add_argument("--eval-samples", type=cli_value(int_in_range(8, 100_000), "--eval-samples"), default=256)
    p.add_argument("--ema-decay", type=cli_value(float_in_range(0.0, 0.99999), "--ema-decay"), default=0.0,
                   help="> 0 samples from a moving average of the generator")
    p.add_argument("--stop-after-epochs", type=cli_value(int_in_range(1, MAX_EPOCHS), "--stop-after-epochs"),
                   help="train at most N epochs now, then stop cleanly (continue later with --resume)")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward passes (eager if it fails)")
    p.add_argument("--cuda-graph", action="store_true", help="CUDA: replay each training step as a CUDA graph")
    p.add_argument("--resume", action="store_true", help="continue an existing model where it stopped")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model of the same name")
    p.add_argument("--yes", action="store_true", help="never prompt: defaults for what is not given")
    return p


def _parse_milestones(text: str) -> list:
    try:
        values = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of epochs") from None
    if not values or values[0] < 1:
        raise ValueError("milestones are epochs >= 1")
    return values


def newest_version(workdir: Path, versions: dict) -> str:
    import data_loader

    def mtime(v: str) -> float:
        return max(data_loader.npz_path(workdir, f, v).stat().st_mtime for f in versions[v])

    return max(versions, key=mtime)


def ask_settings(args: argparse.Namespace, prompter: Prompter, workdir: Path):
    """Fill every setting from its flag, else from a prompt (or its default with --yes)."""
    import data_loader
    from gan_trainer import TrainConfig
    from model_store import ModelFolder

    versions = data_loader.list_versions(workdir)
    if not versions:
        raise UserError(f"no dataset in {workdir / 'npzData'}; run rawDataToImage.py then imageToNPZ.py first")
    if args.dataset_version is None and not args.resume:
        print("dataset versions:")
        for v, fruits in sorted(versions.items()):
            print(f"  {v:<12} {', '.join(fruits)}")

    def parse_version(text: str) -> str:
        if text not in versions:
            raise ValueError(f"no version {text!r}; there are: {', '.join(sorted(versions))}")
        return text

    def parse_model(text: str) -> str:
        name = check_name(text, "model name")
        if not args.resume and not args.overwrite and ModelFolder.in_workdir(workdir, name).exists():
            raise ValueError(f"model {name!r} already exists (use another name, --resume or --overwrite)")
        return name

    if args.resume:  # everything else comes from the saved configuration
        model_name = args.model_name or prompter.ask("Model name to resume", "v1", parse_model)
        return TrainConfig(dataset_version=args.dataset_version or "resume", model_name=model_name,
                           epochs=args.epochs, device=args.device or "auto", precision=args.precision,
                           evaluate=not args.no_eval, eval_samples=args.eval_samples,
                           milestones=args.milestones or TrainConfig.milestones,
                           keep_checkpoint_every=args.keep_checkpoint_every,
                           stop_after_epochs=args.stop_after_epochs, compile=args.compile,
                           cuda_graph=args.cuda_graph)
    version = args.dataset_version
    if version is None:
        version = prompter.ask("Dataset version", newest_version(workdir, versions), parse_version)
    elif version not in versions:
        raise UserError(f"no dataset version {version!r} in {workdir / 'npzData'}; there are: "
                        f"{', '.join(sorted(versions))}")
    model_name = args.model_name or prompter.ask("Model name", "v1", parse_model)
    epochs = args.epochs or prompter.ask("Epochs", 400, int_in_range(1, MAX_EPOCHS))
    batch = args.batch_size or prompter.ask("Batch size", 64, int_in_range(1, MAX_BATCH))
    lr = args.lr or prompter.ask("Learning rate", 0.0002, float_in_range(1e-7, 1.0))
    description = args.description if args.description is not None else prompter.ask(
        "Description (free text)", "", str, show_default="none")
    device = args.device or prompter.ask("Device (auto/cpu/cuda)", "auto", choice_of(DEVICES))
    return TrainConfig(dataset_version=version, model_name=model_name, epochs=epochs, batch_size=batch, lr=lr,
                       description=description, device=device, fruits=args.fruits, seed=args.seed,
                       precision=args.precision, schedule=args.schedule,
                       milestones=args.milestones or TrainConfig.milestones,
                       keep_checkpoint_every=args.keep_checkpoint_every, evaluate=not args.no_eval,
                       eval_samples=args.eval_samples, ema_decay=args.ema_decay,
                       stop_after_epochs=args.stop_after_epochs, compile=args.compile,
                       cuda_graph=args.cuda_graph)


def init_distributed():
    """Under torchrun: join the process group (gloo on CPU, nccl on GPUs) and return DistInfo."""
    from gan_trainer import DistInfo

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
    from model_store import ModelFolder

    try:
        config = ask_settings(args, prompter, workdir)
        overwrite = args.overwrite
        if not args.resume and not overwrite and ModelFolder.in_workdir(workdir, config.model_name).exists():
            raise UserError(f"model {config.model_name!r} already exists; use another --model-name, "
                            "--resume to continue it, or --overwrite to replace it")
        log = print if dist_info.is_main else (lambda msg: print(f"[rank {dist_info.rank}] {msg}"))
        trainer = MultiFruitGANTrainer(config, workdir, overwrite=overwrite, resume=args.resume, log=log,
                                       dist=dist_info)
        trainer.train()
    finally:
        if dist_info.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
