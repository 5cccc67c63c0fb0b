"""The first lines every benchmark prints: when, on what machine, with which command (docs/ pastes them)."""
from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence


def machine() -> str:
    """The CPU model and cores, the GPU (or none) and torch's version."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), {gpu}; torch {torch.__version__}"


def header(script: str, argv: Optional[Sequence[str]]) -> str:
    """'measured <date> on <machine>' and 'command: python benchmarks/<script> <args>'."""
    args = list(sys.argv[1:] if argv is None else argv)
    return (f"measured {datetime.now(timezone.utc):%Y-%m-%d} on {machine()}\n"
            f"command: python benchmarks/{script} {shlex.join(args)}".rstrip())


def add_threads_flag(parser, extra: str = "") -> None:
    """--threads N: torch's CPU threads for the benchmark (two benchmarks side by side: 1 each)."""
    from fruitgan.util.user_io import cli_value, int_in_range

    parser.add_argument("--threads", default=None, type=cli_value(int_in_range(1, 256), "--threads"),
                        help="torch threads (default: torch's choice)" + extra)


def use_threads(threads) -> None:
    """Apply --threads (None: leave torch's own choice)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
