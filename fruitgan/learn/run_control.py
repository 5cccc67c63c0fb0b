"""The parts of a training run around its steps: where the time goes, when to checkpoint, how to stop.

MultiFruitGANTrainer.train() uses them:

* ``RunClock``: wall seconds per part of a run (steps, checkpoints, evaluation, milestone images,
  history writes, the rest), recorded in the run's summary.
* ``Cadence``: "is a checkpoint due?" on a wall-clock cadence (settings.CHECKPOINT_MINUTES).
* ``CheckpointWriter``: one background thread that serialises checkpoints. The caller snapshots to CPU
  copies first (synchronously, so the file is one consistent epoch); the thread only pickles and writes
  atomically. Never two writes at once; a failed write is raised in the trainer at the next call.
* ``StopRequest``: Ctrl+C or SIGTERM while training asks the run to finish the current epoch, write a
  checkpoint and stop; a second one stops at once (the epochs since the last checkpoint are lost). The
  handlers are installed only while training and restored afterwards.
* ``FruitProgress``: one tqdm bar per fruit, updated in place (epoch, losses, time left).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from typing import Callable, Dict, Iterable, Optional

from tqdm import tqdm

TIME_PARTS = ("steps", "checkpoints", "evaluation", "milestone_images", "history_writes", "other")
SECONDS_PER_MINUTE = 60.0
STOP_SIGNALS = ("SIGINT", "SIGTERM")


class RunClock:
    """Wall seconds spent in each of TIME_PARTS since the clock started ("other": the rest)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self.started = clock()
        self.seconds: Dict[str, float] = dict.fromkeys(TIME_PARTS, 0.0)

    def now(self) -> float:
        return self._clock()

    def elapsed(self) -> float:
        return self._clock() - self.started

    @contextlib.contextmanager
    def part(self, name: str):
        if name not in self.seconds or name == "other":
            raise ValueError(f"unknown part {name!r}; one of {TIME_PARTS[:-1]}")
        t0 = self._clock()
        try:
            yield
        finally:
            self.seconds[name] += self._clock() - t0

    def breakdown(self) -> Dict[str, float]:
        """{part: seconds} over TIME_PARTS, "other" being what no part claimed, plus "total"."""
        total = self.elapsed()
        known = sum(v for k, v in self.seconds.items() if k != "other")
        out = {k: round(v, 3) for k, v in self.seconds.items() if k != "other"}
        out["other"] = round(max(0.0, total - known), 3)
        out["total"] = round(total, 3)
        return out


class Cadence:
    """Due every ``minutes`` of wall time (0: always), counted from the last ``mark()``."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.perf_counter):
        self.seconds = minutes * SECONDS_PER_MINUTE
        self._clock = clock
        self._last = clock()

    def due(self) -> bool:
        return self._clock() - self._last >= self.seconds

    def mark(self) -> None:
        self._last = self._clock()


class CheckpointWriter:
    """Runs each ``write`` callable in one background thread, one at a time."""

    def __init__(self, background: bool = True):
        self.background = background
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self.writes = 0

    def submit(self, write: Callable[[], None]) -> None:
        """Wait for the previous write (never two at once), then start this one."""
        self.wait()
        self.writes += 1
        if not self.background:
            write()
            return

        def run() -> None:
            try:
                write()
            except BaseException as exc:   # handed to the training thread by wait()
                self._error = exc

        # Not a daemon: the interpreter waits for a write in progress rather than cutting it off.
        self._thread = threading.Thread(target=run, name="checkpoint-writer")
        self._thread.start()

    def wait(self) -> None:
        """Block until the write in progress is on disk; re-raise its error here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class StopRequest:
    """Context manager: the first Ctrl+C / SIGTERM sets ``requested``; a second one raises KeyboardInterrupt."""

    def __init__(self, message: Callable[[str], str] = lambda name: f"{name}: stopping after this epoch"):
        self.requested: Optional[str] = None
        self._message = message
        self._saved: dict = {}

    def _handle(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            raise KeyboardInterrupt(name)
        self.requested = name
        print("\n" + self._message(name), file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():   # signal handlers live in the main thread
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._saved.items():
            signal.signal(sig, old)
        self._saved.clear()


class FruitProgress:
    """One progress bar per fruit (epoch n/N, losses, time left), redrawn in place.

    Disabled (``enabled=False``) or on a non-terminal the bars print nothing; ``write`` then goes to ``log``.
    """

    def __init__(self, fruits: Iterable[str], first: int, last: int, enabled: bool,
                 log: Callable[[str], None] = print):
        self.log = log
        fruits = list(fruits)
        width = max(map(len, fruits), default=0)
        disable = None if enabled else True        # None: tqdm shows bars only on a terminal
        self.bars = {f: tqdm(total=last, initial=first - 1, desc=f.ljust(width), position=i, unit="ep",
                             leave=True, dynamic_ncols=True, disable=disable, file=sys.stderr)
                     for i, f in enumerate(fruits)}
        self.active = any(not b.disable for b in self.bars.values())

    def update(self, fruit: str, row: dict) -> None:
        bar = self.bars[fruit]
        bar.set_postfix_str(f"D {row['d_loss']:.3f}  G {row['g_loss']:.3f}  D(x) {row['d_real']:.2f}  "
                            f"D(G(z)) {row['d_fake']:.2f}", refresh=False)
        bar.update(1)

    def write(self, message: str) -> None:
        if self.active:
            tqdm.write(message, file=sys.stdout)
        else:
            self.log(message)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def stop_message(signal_name: str, saved_epoch: int) -> str:
    """What the console says when the first Ctrl+C or SIGTERM arrives."""
    what = "Ctrl+C" if signal_name == "SIGINT" else signal_name
    return (f"{what}: finishing this epoch, then saving a checkpoint and stopping "
            f"(Ctrl+C again stops now; training goes back to the checkpoint of epoch {saved_epoch})")


def continue_hint(command: str, epoch: int, epochs: int, saved_epoch: int, finished: bool = True,
                  torchrun: bool = False) -> str:
    """What can be continued after a stop at (or, not ``finished``, during) ``epoch``, and how (``command``:
    the resume command, e.g. "python train_gan.py --resume --model-name v1")."""
    if torchrun:
        command = f"the same torchrun command with: {command.replace('python ', '')}"
    where = f"stopped {'at' if finished else 'during'} epoch {epoch} of {epochs}"
    if not saved_epoch:
        return f"{where}; no checkpoint yet: train it again with --overwrite"
    saved = "checkpoint saved" if saved_epoch == epoch else \
        f"checkpoint of epoch {saved_epoch} kept (later epochs are lost)"
    return f"{where}; {saved}; continue with: {command}"
