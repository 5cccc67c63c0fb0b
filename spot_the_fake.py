"""Can people tell? Real drawings mixed with a model's fakes, each judged real or fake by a person.

    python spot_the_fake.py v1 apple                  in your browser: 20 real drawings and 20 fakes, shuffled
    python spot_the_fake.py v1 apple --no-browser     prints the page's address (http://127.0.0.1:PORT/) and waits
    python spot_the_fake.py v1 apple --terminal       no browser at all: a numbered grid PNG and typed answers

The real drawings are the model's held-out test drawings where it has them, else its training drawings. The
share judged right is set beside the machine's two-sample figure; each finished session is added to the model
folder's info/human_test_<fruit>.jsonl (a session left halfway is not kept)."""
from __future__ import annotations

if __name__ == "__main__":   # first of all: Ctrl+C while the imports below load exits 130 too
    from fruitgan.util.user_io import interrupt_exits_130
    interrupt_exits_130()

import argparse
import io
import math
import os
import secrets
import sys
import webbrowser
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from fruitgan.util import settings as st
from fruitgan.util.safe_files import atomic_save_image, default_workdir
from fruitgan.util.user_io import ArgumentParser, EndOfInput, Prompter, UserError, choice_of, cli_value, run_main

NOT_KEPT = "the session was not kept (only finished sessions are)"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description="Can people tell a model's fakes from real drawings? A test to take.")
    p.add_argument("model", nargs="?", help="model name (models/model_<name>); asked when omitted")
    p.add_argument("fruit", nargs="?", help="one of the model's fruits; asked when omitted")
    st.SPOT_IMAGES.add_to(p)
    p.add_argument("--seed", type=cli_value(st.SEED.parse, "--seed"),
                   help="draws and shuffles the drawings (default: a random one, printed and kept with the session)")
    p.add_argument("--checkpoint", default="best", help="best (default: the machine's figure is of it), latest, "
                   "milestone or a kept epoch number")
    st.PORT.add_to(p)
    p.add_argument("--no-browser", action="store_true", help="print the page's address and wait")
    p.add_argument("--terminal", action="store_true", help="a numbered grid PNG and typed answers (the default "
                   "where no browser can open)")
    p.add_argument("--workdir", type=Path, default=default_workdir(), help="folder holding models/ and npzData/")
    p.add_argument("--yes", action="store_true", help="never prompt for settings: defaults for what is not given "
                   "(the answers themselves are always asked)")
    return p


def parse_config(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    from fruitgan.models import folder

    args = build_parser().parse_args(argv)           # a bad --checkpoint: load_generator names the ones there are
    if args.no_browser and args.terminal:
        raise UserError("--no-browser serves the page, --terminal does without it: give one of them")
    prompter = Prompter(args.yes)
    names = folder.model_names(args.workdir)
    if not names and args.model is None:
        raise UserError(f"no trained models in {folder.models_root(args.workdir)}; {folder.TRAIN_HINT}")
    args.model = args.model or prompter.ask("Model", names[0], choice_of(names))
    fruits = folder.open_model(args.workdir, args.model).fruits()   # an unknown model: one line listing them
    args.fruit = args.fruit or prompter.ask("Fruit", fruits[0] if fruits else "", choice_of(fruits))
    args.num_images = st.SPOT_IMAGES.ask(prompter) if args.num_images is None else args.num_images
    args.seed = secrets.randbelow(st.SEED_MAX + 1) if args.seed is None else args.seed
    args.port = st.PORT.given(args.port)
    args.mode = "terminal" if args.terminal else "address" if args.no_browser else "browser"
    return args


def load_session(cfg: argparse.Namespace):
    """The session's drawings (practice and scored, real and fake), what the page says of them, and the model."""
    import gan_model
    import generate_images as gi
    from fruitgan.models import loading
    from fruitgan.people.session import PRACTICE_EACH, build_session
    from fruitgan.util import pictures

    generator, meta = loading.load_generator(cfg.workdir, cfg.model, cfg.fruit, cfg.checkpoint)
    wanted = cfg.num_images + PRACTICE_EACH
    reals, which = gi.real_drawings_for(cfg.workdir, meta, cfg.fruit, wanted, cfg.seed)
    if len(reals) < wanted:
        raise UserError(f"there are only {len(reals)} real {cfg.fruit} drawings ({which}) for {wanted} "
                        f"({PRACTICE_EACH} for practice); give --num-images {max(1, len(reals) - PRACTICE_EACH)}")
    noise = gi.sample_noise(wanted, generator.config.noise_dim, cfg.seed)
    fakes = pictures.to_uint8(gan_model.generate(generator, noise))
    if fakes.shape != reals.shape:
        raise UserError(f"the model draws {fakes.shape[1]} px images but its dataset holds {reals.shape[1]} px "
                        "drawings; they cannot be shown side by side")
    where = ("the model's held-out test drawings (it never trained on them)" if which == "held-out test drawings"
             else "the drawings the model trained on (it has no held-out test drawings)")
    about = (f"{2 * cfg.num_images} drawings of a {cfg.fruit}: {cfg.num_images} real ones, from {where}, and "
             f"{cfg.num_images} drawn by model {cfg.model}. Which are which?")
    print(f"{cfg.model} {cfg.fruit}: {cfg.num_images} real drawings ({which}) and {cfg.num_images} fakes of the "
          f"{meta['checkpoint']} checkpoint, seed {cfg.seed}")
    return build_session(reals, fakes, cfg.seed), about, meta, which


def finisher(cfg: argparse.Namespace, meta: dict, which: str) -> Callable:
    """What runs once the scored round is over: keep the session, then score it beside the machine's figure."""
    from fruitgan.models import folder, reported
    from fruitgan.people import results
    from fruitgan.people.session import result_lines, score

    def finish(session) -> dict:
        model_dir = folder.model_dir(cfg.workdir, cfg.model)
        record = session.record(model=cfg.model, fruit=cfg.fruit, checkpoint=meta["checkpoint"],
                                epoch=meta.get("epoch"), real_drawings=which, mode=cfg.mode)
        path = results.append_session(model_dir, cfg.fruit, record)
        person = score(session.pairs())
        quality = reported.describe_model(cfg.workdir, cfg.model)["quality"].get(cfg.fruit, {})
        machine = reported.reported_figures(quality)
        lines = result_lines(person, machine, results.pooled_human_figure(model_dir, cfg.fruit))
        return {"accuracy": person["accuracy"], "lines": lines + [f"Kept in {path}."]}
    return finish


def announcer(mode: str) -> Callable[[str], None]:
    def announce(url: str) -> None:
        try:
            opened = mode == "browser" and webbrowser.open(url)
        except webbrowser.Error:
            opened = False
        print(f"The test is open in your browser at {url}" if opened else
              f"Open {url} in a browser on this computer; waiting for the test to end", "(Ctrl+C stops it).",
              flush=True)
    return announce


def letters(count: int) -> Callable[[str], str]:
    def parse(text: str) -> str:
        typed = text.replace(" ", "").lower()
        if len(typed) != count or set(typed) - {"r", "f"}:
            raise ValueError(f"type {count} letter{'s' * (count > 1)}, each r (real) or f (fake)")
        return typed
    return parse


def terminal_round(cfg: argparse.Namespace, session, practice: bool, answers: Prompter) -> None:
    """One round in the terminal: a grid PNG with numbered rows, then one typed line per row."""
    import generate_images as gi
    from PIL import Image
    from fruitgan.people.session import FAKE, REAL
    from fruitgan.util import pictures

    shown = session.round(practice)
    columns = math.ceil(math.sqrt(len(shown)))
    tiles = np.stack([np.asarray(Image.open(io.BytesIO(s.png))) for s in shown])   # the page's very pixels
    rows = [(f"{s + 1}-{min(s + columns, len(shown))}", pictures.image_grid(
        tiles[s:s + columns], columns, gi.GRID_PAD, gi.GRID_PAD_VALUE, gi.MIN_TILE_PX))
        for s in range(0, len(shown), columns)]
    name = f"spot_the_fake_{cfg.model}_{cfg.fruit}_seed{cfg.seed}_{'practice' if practice else 'scored'}.png"
    path = atomic_save_image(gi.stacked_grids(rows), Path(cfg.workdir) / gi.OUTPUTS_DIR / name)
    for s in shown:
        s.served = True
    print(f"{'Practice' if practice else 'Scored round'}: open {path} and judge drawings 1-{len(shown)}.")
    for start in range(0, len(shown), columns):
        row, typed = shown[start:start + columns], ""
        while not typed:            # Enter alone asks again: an answer is never a default
            typed = answers.ask(f"Drawings {start + 1}-{start + len(row)}: r (real) or f (fake) for each, left to "
                                "right", "", letters(len(row)), show_default=f"{len(row)} letters")
        for s, letter in zip(row, typed):
            session.answer(s.id, REAL if letter == "r" else FAKE)
        if practice:
            print("  " + "; ".join(f"{start + i + 1}: {'right' if s.answer == s.truth else 'wrong'}, {s.truth}"
                                   for i, s in enumerate(row)))


def terminal_test(cfg: argparse.Namespace, session, about: str, finish: Callable) -> dict:
    print(about)
    answers = Prompter(assume_yes=False)        # --yes takes default settings, never default answers
    try:
        if Prompter(cfg.yes).confirm("Practice first, with feedback?", default=True):
            terminal_round(cfg, session, True, answers)
        terminal_round(cfg, session, False, answers)
    except EndOfInput:
        raise UserError(f"end of input before the last answer: {NOT_KEPT}") from None
    return finish(session)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from fruitgan.people import server

    cfg = parse_config(argv)
    session, about, meta, which = load_session(cfg)
    finish = finisher(cfg, meta, which)
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if cfg.mode == "browser" and sys.platform.startswith("linux") and not display:
        print("No browser can open here: the test runs in the terminal (--no-browser serves the page instead).")
        cfg.mode = "terminal"
    if cfg.mode == "terminal":
        outcome = terminal_test(cfg, session, about, finish)
    else:
        app = server.TestApp(session, about, finish, log=lambda line: print(line, flush=True))
        outcome = server.serve(app, cfg.port, announcer(cfg.mode))
    print("\n".join(outcome["lines"]))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, interrupted_hint=NOT_KEPT))
