"""Talking to the user: prompts with defaults, one-line errors, and the main() wrapper.

Prompts show their default, validate the answer and ask again on a bad one. With ``--yes`` they
never ask. When stdin is not a terminal they still read answers line by line (so scripts can
pipe answers in), and at end of input they take the default instead of waiting.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence, TypeVar

T = TypeVar("T")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem with the user's input or environment: shown as one line, never a traceback."""


def run_main(main: Callable[[Optional[Sequence[str]]], Optional[int]], argv=None) -> int:
    """Run a script's main(); turn UserError and Ctrl+C into a one-line message and exit code."""
    try:
        return int(main(argv) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted: files already written are complete; run again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


class Prompter:
    """Asks questions on stdin/stdout, or answers them with defaults when ``assume_yes``."""

    def __init__(self, assume_yes: bool = False, stdin=None, stdout=None):
        self.assume_yes = assume_yes
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout

    def _readline(self) -> Optional[str]:
        try:
            line = self.stdin.readline()
        except (OSError, ValueError):  # closed or missing stdin
            return None
        return None if line == "" else line.rstrip("\r\n")

    def ask(self, question: str, default: T, parse: Callable[[str], T], show_default: Optional[str] = None) -> T:
        """Ask ``question``; an empty answer takes ``default``; ``parse`` raises ValueError on a bad answer."""
        if self.assume_yes:
            return default
        shown = show_default if show_default is not None else str(default)
        while True:
            print(f"{question} [{shown}]: ", end="", file=self.stdout, flush=True)
            answer = self._readline()
            if answer is None:
                print(f"\n(no input: using {shown})", file=self.stdout)
                return default
            answer = answer.strip()
            if answer == "":
                return default
            try:
                return parse(answer)
            except (ValueError, UserError) as exc:
                print(f"  invalid answer: {exc}. Try again.", file=self.stdout)

    def confirm(self, question: str, default: bool = False) -> bool:
        return self.ask(question, default, parse_yes_no, show_default="Y/n" if default else "y/N")


def parse_yes_no(text: str) -> bool:
    t = text.strip().lower()
    if t in ("y", "yes"):
        return True
    if t in ("n", "no"):
        return False
    raise ValueError("answer y or n")


def int_in_range(lo: int, hi: int) -> Callable[[str], int]:
    """Parser for an integer between lo and hi inclusive."""

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise ValueError(f"{value} is outside {lo}-{hi}")
        return value

    return parse


def float_in_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not (lo <= value <= hi):
            raise ValueError(f"{value} is outside {lo}-{hi}")
        return value

    return parse


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
    """Wrap a prompt parser for argparse ``type=``: a bad flag value becomes a one-line error."""
    import argparse

    def convert(text: str) -> T:
        try:
            return parse(text)
        except (ValueError, UserError) as exc:
            raise argparse.ArgumentTypeError(f"{flag}: {exc}") from None

    return convert
