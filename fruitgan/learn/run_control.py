"""The parts of a training run around its steps (MultiFruitGANTrainer.train): where the time goes (RunClock),
when a checkpoint is due (Cadence), how Ctrl+C/SIGTERM stop it (StopRequest), what the console shows (Console)."""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from typing import Callable, Dict, Iterable, Optional

from tqdm import tqdm

from fruitgan.data.heldout_split import validation_key
from fruitgan.util.user_io import Interrupted

TIME_PARTS = ("steps", "checkpoints", "evaluation", "milestone_images", "history_writes", "other")
SECONDS_PER_MINUTE = 60.0
STOP_SIGNALS = ("SIGINT", "SIGTERM")


class RunClock:
    """Wall seconds spent in each of TIME_PARTS since the clock started ("other": the rest)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self._clock, self.started = clock, clock()
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
        total, known = self.elapsed(), {k: v for k, v in self.seconds.items() if k != "other"}
        out = {**known, "other": max(0.0, total - sum(known.values())), "total": total}
        return {k: round(v, 3) for k, v in out.items()}


class Cadence:
    """Due every ``minutes`` of wall time (0: always), counted from the last ``mark()``."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.perf_counter):
        self.seconds, self._clock, self._last = minutes * SECONDS_PER_MINUTE, clock, clock()

    def due(self) -> bool:
        return self._clock() - self._last >= self.seconds

    def mark(self) -> None:
        self._last = self._clock()


class StopRequest:
    """Context manager: the first Ctrl+C / SIGTERM sets ``requested`` and ``write``s ``message(signal name)``;
    a second one stops at once: leaving the block on it raises user_io.Interrupted with ``unfinished()``, the
    hint of a run stopped mid-epoch. ``stop(hint)`` is the clean stop, after an epoch."""

    def __init__(self, message: Callable[[str], str] = lambda name: f"{name}: stopping after this epoch",
                 write: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
                 unfinished: Callable[[], str] = lambda: "stopped during an epoch"):
        self.requested: Optional[str] = None
        self._message, self._write, self._unfinished = message, write, unfinished
        self._saved: dict = {}

    def _handle(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            raise KeyboardInterrupt(name)
        self.requested = name
        self._write(self._message(name))

    @staticmethod
    def stop(hint: str) -> None:
        raise Interrupted(hint)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():   # signal handlers live in the main thread
            for sig in (getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        for sig, old in self._saved.items():
            signal.signal(sig, old)
        self._saved.clear()
        if exc_type is KeyboardInterrupt:        # a second Ctrl+C (not the clean stop): back to the last checkpoint
            raise Interrupted(self._unfinished()) from None


class Console:
    """The one way a training run prints: ``say`` a line; ``bars`` for the epochs, one per fruit. With bars on
    screen a line goes above them (tqdm.write), never over one; without a terminal lines go straight to ``log``."""

    def __init__(self, log: Callable[[str], None] = print):
        self.log = log
        self.bars: Dict[str, tqdm] = {}
        self.pending: list = []

    def start_bars(self, fruits: Iterable[str], first: int, last: int, enabled: bool) -> None:
        fruits = list(fruits)
        width = max(map(len, fruits), default=0)
        disable = None if enabled else True        # None: tqdm shows bars only on a terminal
        self.bars = {f: tqdm(total=last, initial=first - 1, desc=f.ljust(width), position=i, unit="ep",
                             leave=True, dynamic_ncols=True, disable=disable, file=sys.stderr)
                     for i, f in enumerate(fruits)}

    @property
    def active(self) -> bool:
        return any(not b.disable for b in self.bars.values())

    def update(self, fruit: str, row: dict) -> None:
        self.flush()
        bar = self.bars[fruit]
        bar.set_postfix_str(f"D {row['d_loss']:.3f}  G {row['g_loss']:.3f}  D(x) {row['d_real']:.2f}  "
                            f"D(G(z)) {row['d_fake']:.2f}", refresh=False)
        bar.update(1)

    def say(self, message: str) -> None:
        if self.active:
            tqdm.write(message, file=sys.stdout)      # on screen with the bars; clears them first
        else:
            self.log(message)

    def say_soon(self, message: str) -> None:
        """For a signal handler: it may interrupt a bar half drawn, so with bars on screen the line waits for
        the next ``flush`` (after the step in progress) instead of being written into the middle of one."""
        if self.active:
            self.pending.append(message)
        else:
            self.log(message)

    def flush(self) -> None:
        while self.pending:
            self.say(self.pending.pop(0))

    def close(self) -> None:
        """The bars stay on screen as they ended; later lines start below them."""
        self.flush()
        for bar in self.bars.values():
            bar.close()
        self.bars = {}


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _figure(metrics: dict, key: str, label: str, spec: str) -> str:
    """'label value', or 'label: note' when the figure was not measured (e.g. not enough real drawings)."""
    value = metrics.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{label} {value:{spec}}"
    return f"{label}: {metrics.get(key + '_note') or 'not measured'}"


def milestone_line(epoch: int, epochs: int, fruit: str, row: dict, metrics: Optional[dict]) -> str:
    """The one console line a fruit gets at a milestone: losses, D's outputs and the quality figures."""
    line = (f"epoch {epoch:>4}/{epochs} {fruit:<10} D {row['d_loss']:.3f} G {row['g_loss']:.3f} "
            f"D(x) {row['d_real']:.2f} D(G(z)) {row['d_fake']:.2f}")
    if not metrics:
        return line
    acc, half = metrics.get(validation_key("two_sample_accuracy")), metrics.get(validation_key("two_sample_half_width"))
    held = (f"validation 2-sample {acc:.2f}±{half:.2f}" if isinstance(acc, float) and isinstance(half, float)
            else "held-out tests: no split" if metrics.get(validation_key("two_sample_note")) else "")
    parts = [held, _figure(metrics, "recognizability", "recognised", ".0%"), _figure(metrics, "fid", "FID", ".2f")]
    return line + " | " + "  ".join(p for p in parts if p)


def time_line(estimated: float, actual: float, parts: Dict[str, float]) -> str:
    """The end of a run: the estimate against the time it took, and where the time went."""
    off = (actual - estimated) / estimated if estimated else 0.0
    return (f"time: estimated {fmt_duration(estimated)}, took {fmt_duration(actual)} ({off:+.0%}); "
            + ", ".join(f"{k} {v:.1f}s" for k, v in parts.items() if k != "total"))


def stop_message(signal_name: str, saved_epoch: int) -> str:
    """What the console says when the first Ctrl+C or SIGTERM arrives."""
    what = "Ctrl+C" if signal_name == "SIGINT" else signal_name
    return (f"{what}: finishing this epoch, then saving a checkpoint and stopping "
            f"(Ctrl+C again stops now; training goes back to the checkpoint of epoch {saved_epoch})")


def continue_hint(command: str, epoch: int, epochs: int, saved_epoch: int, finished: bool = True,
                  torchrun: bool = False) -> str:
    """What can be continued after a stop at (or, not ``finished``, during) ``epoch``, and with ``command``."""
    if torchrun:
        command = f"the same torchrun command with: {command.replace('python ', '')}"
    where = f"stopped {'at' if finished else 'during'} epoch {epoch} of {epochs}"
    if not saved_epoch:
        return f"{where}; no checkpoint yet: train it again with --overwrite"
    saved = ("checkpoint saved" if saved_epoch == epoch
             else f"checkpoint of epoch {saved_epoch} kept (later epochs are lost)")
    return f"{where}; {saved}; continue with: {command}"
