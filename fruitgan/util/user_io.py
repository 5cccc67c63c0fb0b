"""Talking to the user: prompts with defaults, one-line errors, and the main() wrapper.

Prompts show their default, validate the answer and ask again on a bad one; an empty answer
takes the default. With ``--yes`` they never ask (that is how a script takes the defaults). When
stdin is not a terminal they still read answers line by line (so scripts can pipe answers in).
End of input (Ctrl+D, an exhausted pipe, no stdin) stops the script with ``EndOfInput``, a
one-line UserError: work never starts on defaults nobody chose. ``run_main`` turns UserError into
"error: ..." (exit 2) and Ctrl+C into "interrupted; files already written are complete[; <hint>]" (130)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, TypeVar, Union

T = TypeVar("T")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
INTERRUPTED_MESSAGE = "interrupted; files already written are complete"


class UserError(Exception):
    """A problem with the user's input or environment: shown as one line, never a traceback."""


class EndOfInput(UserError):
    """End of input at a prompt: the script stops instead of taking a default nobody chose."""


class Interrupted(KeyboardInterrupt):
    """Ctrl+C with a ``hint`` saying what can be continued and how (e.g. the --resume command): a script
    catches KeyboardInterrupt where it knows that, and raises ``Interrupted(hint) from None``."""

    def __init__(self, hint: str):
        super().__init__(hint)
        self.hint = hint


def run_main(main: Callable[[Optional[Sequence[str]]], Optional[int]], argv=None,
             interrupted_hint: Union[None, str, Callable[[], Optional[str]]] = None) -> int:
    """Run a script's main(); turn UserError and Ctrl+C into a one-line message and exit code. After Ctrl+C
    the hint is an ``Interrupted``'s, else ``interrupted_hint`` (a string, or a callable asked then), else none."""
    if threading.current_thread() is threading.main_thread():
        # Ctrl+C raises KeyboardInterrupt even where SIGINT was inherited as ignored (a shell's background job).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return int(main(argv) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        hint = exc.hint if isinstance(exc, Interrupted) else (
            interrupted_hint() if callable(interrupted_hint) else interrupted_hint)
        print(f"\n{INTERRUPTED_MESSAGE}; {hint}" if hint else f"\n{INTERRUPTED_MESSAGE}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def interrupt_exits_130() -> None:
    """Call first thing in a script: Ctrl+C while its imports load prints the interrupted line and exits 130
    (no traceback; nothing is written yet); run_main then takes over."""
    def stop(signum, frame):
        print("\n" + INTERRUPTED_MESSAGE, file=sys.stderr)
        os._exit(EXIT_INTERRUPTED)
    signal.signal(signal.SIGINT, stop)


class Prompter:
    """Asks questions on stdin/stdout, or answers them with defaults when ``assume_yes``."""

    def __init__(self, assume_yes: bool = False, stdin=None, stdout=None):
        self.assume_yes = assume_yes
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout

    def _readline(self) -> Optional[str]:
        if self.stdin is None:  # started with stdin closed
            return None
        try:
            line = self.stdin.readline()
        except (OSError, ValueError):  # closed or unreadable stdin
            return None
        return None if line == "" else line.rstrip("\r\n")

    def ask(self, question: str, default: T, parse: Callable[[str], T], show_default: Optional[str] = None,
            flag: Optional[str] = None) -> T:
        """Ask ``question``; an empty answer takes ``default``; ``parse`` raises ValueError on a bad answer.
        A text ``default`` is parsed too when taken: refused, it asks again (with ``--yes``: a UserError naming
        ``flag``, e.g. "--epochs N", which the EndOfInput message also names)."""
        shown = show_default if show_default is not None else str(default)
        if self.assume_yes:
            try:
                return _checked_default(default, parse)
            except (ValueError, UserError) as exc:
                how = f"give {flag}" if flag else "answer it without --yes"
                raise UserError(f"the default {shown!r} for {question!r} cannot be used ({exc}); {how}") from None
        while True:
            print(f"{question} [{shown}]: ", end="", file=self.stdout, flush=True)
            answer = self._readline()
            if answer is None:
                print(file=self.stdout)  # end the prompt's line
                how = f"give {flag}" if flag else "answer it"
                raise EndOfInput(f"no answer for {question!r} (end of input); {how} or --yes to take the defaults")
            answer = answer.strip()
            try:
                # Enter takes the default, checked like a typed answer: refused now, not after every later question.
                return _checked_default(default, parse) if answer == "" else parse(answer)
            except (ValueError, UserError) as exc:
                what = f"the default {shown!r} cannot be used" if answer == "" else "invalid answer"
                print(f"  {what}: {exc}. Try again.", file=self.stdout)

    def confirm(self, question: str, default: bool = False, flag: Optional[str] = None) -> bool:
        return self.ask(question, default, parse_yes_no, show_default="Y/n" if default else "y/N", flag=flag)


def _checked_default(default: T, parse: Callable[[str], T]) -> T:
    """A text default goes through ``parse`` like a typed answer (it may name e.g. an existing model);
    other defaults (numbers, lists, switches) are declared values that need no check."""
    return parse(default) if isinstance(default, str) and default != "" else default


def parse_yes_no(text: str) -> bool:
    answer = {"y": True, "yes": True, "n": False, "no": False}.get(text.strip().lower())
    if answer is None:
        raise ValueError("answer y or n")
    return answer


@dataclass(frozen=True)
class Bounds:
    """A setting's range, declared once: ``lo``..``hi``, either edge open (excluded) or closed."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __str__(self) -> str:
        lo, hi = (str(x) if isinstance(x, int) else f"{x:g}" for x in (self.lo, self.hi))
        return f"{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


def number_in(bounds: Bounds, kind: type = float) -> Callable[[str], Union[int, float]]:
    """Parser for a number of ``kind`` (int or float) within ``bounds``."""
    what = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(str(text).strip())
        except ValueError:
            raise ValueError(f"{text!r} is not {what}") from None
        if value != value or value not in bounds:   # value != value: NaN
            raise ValueError(f"{value} is outside {bounds}")
        return value

    return parse


def int_in_range(lo: int, hi: int) -> Callable[[str], int]:
    """Parser for an integer between lo and hi inclusive."""
    return number_in(Bounds(lo, hi), int)


def float_in_range(lo: float, hi: float) -> Callable[[str], float]:
    """Parser for a number between lo and hi inclusive."""
    return number_in(Bounds(lo, hi), float)


def choice_of(options: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        t = text.strip()
        if t not in options:
            raise ValueError(f"{t!r} is not one of {', '.join(options)}")
        return t

    return parse


def list_of(options: Sequence[str], what: str = "item") -> Callable[[str], list]:
    """Parser for a comma-separated subset of ``options`` ('all' means every option)."""

    def parse(text: str) -> list:
        t = text.strip()
        if t.lower() == "all":
            return list(options)
        items = [x.strip().lower() for x in t.split(",") if x.strip()]
        if not items:
            raise ValueError(f"give at least one {what}")
        unknown = [x for x in items if x not in options]
        if unknown:
            raise ValueError(f"unknown {what} {', '.join(unknown)}; there are: {', '.join(options)}")
        return list(dict.fromkeys(items))

    return parse


def cli_value(parse: Callable[[str], T], flag: str):
    """Wrap a prompt parser for argparse ``type=``: a bad flag value becomes an error naming the flag
    (argparse adds "argument <flag>: " itself)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except (ValueError, UserError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr ("error: argument --lr: ...; see <prog> --help"), exit 2."""

    def error(self, message: str):
        print(f"error: {message}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)
