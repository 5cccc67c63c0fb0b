"""Nothing prints over a progress bar: train_gan.py runs in a pseudo-terminal (so tqdm draws its bars) and the
screen it writes is read back. Every line the run prints while its bars are up (milestone lines, the end-of-run
time line, the Ctrl+C message) must start a line of its own, not follow a bar's text after a carriage return."""
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

from conftest import ROOT, TINY_VERSION

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")     # other terminal sequences (none changes what a row shows here)
ROWS, COLUMNS = 30, 110
TIMEOUT_S = 300


def run_in_terminal(args, interrupt_after: str = ""):
    """Run train_gan.py with ``args`` on a pseudo-terminal; send SIGINT once ``interrupt_after`` is on screen.
    Returns (exit code, everything written to the terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg", COLUMNS=str(COLUMNS), TERM="xterm")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_gan.py"), *args], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, cwd=ROOT, env=env)
    os.close(slave)
    screen, sent, deadline = b"", not interrupt_after, time.time() + TIMEOUT_S
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:          # the terminal closed: the process is gone
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
        if not sent and interrupt_after in ANSI.sub("", screen.decode(errors="replace")):
            proc.send_signal(signal.SIGINT)
            sent = True
    os.close(master)
    code = proc.wait(timeout=60)
    return code, screen.decode(errors="replace")


def render(screen: str) -> list:
    """The terminal's rows once everything was written (scrolled-off rows kept): characters overwrite in place,
    a carriage return goes to the row's start, a newline one row down, ESC[A one row up (all tqdm uses)."""
    rows, row, col = [[]], 0, 0
    for part in re.split(r"(\x1b\[A|\r|\n)", screen):
        if part == "\r":
            col = 0
        elif part in ("\n", "\x1b[A"):
            row = row + 1 if part == "\n" else max(0, row - 1)
            rows += [[] for _ in range(row + 1 - len(rows))]
        else:
            for ch in ANSI.sub("", part):
                if col == COLUMNS:                   # the terminal wraps a long line
                    row, col = row + 1, 0
                    rows += [[] for _ in range(row + 1 - len(rows))]
                line = rows[row] + [" "] * (col + 1 - len(rows[row]))
                line[col] = ch
                rows[row], col = line, col + 1
    return ["".join(r).rstrip() for r in rows]


def shown_alone(rows: list, text: str) -> bool:
    """``text`` is on the final screen, intact and on rows of its own: nothing before it, after it or over it."""
    pieces = [text[i:i + COLUMNS] for i in range(0, len(text), COLUMNS)]
    return any(rows[i:i + len(pieces)] == pieces for i in range(len(rows)))


def _args(workdir, name, epochs):
    return ["--workdir", str(workdir), "--yes", "--dataset-version", TINY_VERSION, "--model-name", name,
            "--epochs", str(epochs), "--batch-size", "8", "--milestones", "1", "--device", "cpu", "--no-eval",
            "--checkpoint-minutes", "600"]


def test_lines_printed_during_training_never_land_on_a_bar(tiny_workdir):
    code, screen = run_in_terminal(_args(tiny_workdir, "tty", 3))
    assert code == 0, screen[-3000:]
    assert "100%|" in screen and ("ep/s" in screen or "s/ep" in screen)     # the bars were drawn (a terminal)
    rows = render(screen)
    lines = re.findall(r"(?:epoch +\d+/3 \w+|time: estimated|model saved in)[^\r\n]*", screen)
    assert len(lines) == 3 * 2 + 2, lines                              # 3 fruits at milestones 1 and 3, then 2
    for line in lines:
        assert shown_alone(rows, line), (line, rows)


def test_the_ctrl_c_message_starts_its_own_line(tiny_workdir):
    code, screen = run_in_terminal(_args(tiny_workdir, "tty_stop", 400), interrupt_after="epoch    1/400 pear")
    assert code == 130, screen[-3000:]
    for text in ("Ctrl+C: finishing this epoch", "continue with: python train_gan.py --resume"):
        assert text in screen, screen[-3000:]
    rows = render(screen)
    message = next(m.group(0) for m in re.finditer(r"Ctrl\+C: finishing this epoch[^\r\n]*\)", screen))
    assert shown_alone(rows, message), rows
