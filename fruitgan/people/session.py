"""One spot-the-fake session: the drawings shown, their order, the answers and the score. Real and fake drawings
take the same road to the screen (``png_bytes``, random ids, a seeded shuffle); the truth leaves the session only
as practice feedback and in the record kept once the scored round is over."""
from __future__ import annotations

import io
import secrets
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from fruitgan.models.index import now

REAL, FAKE = "real", "fake"
ANSWERS = (REAL, FAKE)
ID_BYTES = 6                # image ids: 12 random hex digits, unrelated to the drawing
PRACTICE_EACH = 2           # the practice round: this many real drawings and as many fakes, with feedback
CHANCE = 0.5                # the share judged right by guessing


class Refused(Exception):
    """A request the session refuses: ``code`` is the HTTP status, the message says why in one line."""

    def __init__(self, code: int, why: str):
        super().__init__(why)
        self.code = code


@dataclass
class Shown:
    """One drawing of the session; ``drawing`` is its place in the seeded draw of its kind."""

    id: str
    truth: str
    drawing: int
    png: bytes
    practice: bool
    served: bool = False             # the page (or the terminal grid) has shown it
    answer: Optional[str] = None
    seconds: Optional[float] = None  # since the session started, when it was answered


@dataclass
class Session:
    seed: int
    images: List[Shown]              # the practice round, then the scored round, each in shuffled order
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=now)

    def round(self, practice: bool) -> List[Shown]:
        return [s for s in self.images if s.practice == practice]

    def image(self, image_id: object) -> Shown:
        found = next((s for s in self.images if s.id == image_id), None)
        if found is None:
            raise Refused(404, f"no image {str(image_id)[:2 * ID_BYTES]!r} in this session")
        return found

    def answer(self, image_id: object, answer: object) -> Shown:
        """Record one answer; a bad, early or repeated one is Refused and changes nothing."""
        shown = self.image(image_id)
        if answer not in ANSWERS:
            raise Refused(400, f"answer {str(answer)[:ID_BYTES]!r} is neither {REAL!r} nor {FAKE!r}")
        if not shown.served:
            raise Refused(409, f"image {shown.id} has not been shown yet")
        if shown.answer is not None:
            raise Refused(409, f"image {shown.id} was already answered (a replayed answer)")
        shown.answer, shown.seconds = answer, round(time.monotonic() - self.started, 3)
        return shown

    def finished(self) -> bool:
        return all(s.answer is not None for s in self.round(practice=False))

    def pairs(self) -> List[Tuple[str, str]]:
        return [(s.truth, s.answer) for s in self.round(practice=False)]

    def record(self, **about) -> dict:
        """The session as it is kept (results.append_session): who was shown what, what they said, when."""
        scored = [{"id": s.id, "truth": s.truth, "drawing": s.drawing, "answer": s.answer, "seconds": s.seconds}
                  for s in self.round(practice=False)]
        return {**about, "seed": self.seed, "started": self.started_at, "finished": now(),
                "practice_answered": sum(s.answer is not None for s in self.round(practice=True)), "images": scored}


def png_bytes(pixels: np.ndarray) -> bytes:
    """One (R, R) uint8 drawing as PNG bytes: the one encoding of real and fake alike."""
    from PIL import Image

    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise TypeError(f"expected one (R, R) uint8 drawing, got {pixels.dtype} {pixels.shape}")
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode="L").save(out, format="PNG")
    return out.getvalue()


def build_session(reals: np.ndarray, fakes: np.ndarray, seed: int) -> Session:
    """Practice on the first PRACTICE_EACH drawings of each kind, score the rest; each round shuffled by ``seed``."""
    if reals.shape != fakes.shape:
        raise ValueError(f"real drawings {reals.shape} and fakes {fakes.shape} differ in number or size")
    rng, images = np.random.default_rng(seed), []
    for practice, part in ((True, slice(None, PRACTICE_EACH)), (False, slice(PRACTICE_EACH, None))):
        pool = [(truth, k, drawings[k]) for truth, drawings in ((REAL, reals), (FAKE, fakes))
                for k in range(len(drawings))[part]]
        images += [Shown(secrets.token_hex(ID_BYTES), pool[i][0], pool[i][1], png_bytes(pool[i][2]), practice)
                   for i in rng.permutation(len(pool))]
    return Session(seed, images)


def score(pairs: Sequence[Tuple[str, str]]) -> dict:
    """(truth, answer) pairs -> share judged right with its 95% Wilson interval, and the error on each kind:
    fakes taken for real, real drawings taken for fake (None where there were none)."""
    from fruitgan.metrics.two_sample import wilson_interval

    right = sum(t == a for t, a in pairs)
    fakes, reals = [a for t, a in pairs if t == FAKE], [a for t, a in pairs if t == REAL]
    low, high = wilson_interval(right, len(pairs))
    share = lambda hits, of: hits / of if of else None
    return {"right": right, "judged": len(pairs), "accuracy": share(right, len(pairs)), "low": low, "high": high,
            "fakes": len(fakes), "fakes_taken_for_real": fakes.count(REAL),
            "fake_error": share(fakes.count(REAL), len(fakes)), "reals": len(reals),
            "reals_taken_for_fake": reals.count(FAKE), "real_error": share(reals.count(FAKE), len(reals))}


def machine_figure(machine: dict) -> Optional[Tuple[float, float, float]]:
    """The machine's two-sample accuracy and its interval (the figure itself where no interval was kept)."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    acc, low, high = (machine.get(f"two_sample_{k}") for k in ("accuracy", "low", "high"))
    return (acc, low if number(low) else acc, high if number(high) else acc) if number(acc) else None


def comparison(person: dict, machine: dict) -> str:
    """One plain sentence on what the difference between a person's figure and the machine's means."""
    figure = machine_figure(machine)
    if figure is None:
        why = machine.get("two_sample_note") or "not measured"
        return f"The machine's two-sample test has no figure for this fruit ({why}), so there is nothing to compare."
    acc, low, high = figure
    if person["high"] >= low and high >= person["low"]:
        return ("The two 95% intervals overlap: on these drawings you and the machine tell real from fake about "
                "equally well; more sessions would be needed to say who is better.")
    if acc > person["accuracy"]:
        return ("The machine tells them apart better than you did: the fakes differ from real drawings in ways a "
                "small network picks up but the eye passes over.")
    return ("You told them apart better than the machine: the fakes have flaws the eye catches that the machine's "
            "small network misses.")


def result_lines(person: dict, machine: dict, pooled: Optional[dict]) -> List[str]:
    """What the page and the console show at the end, in plain lines."""
    lines = [f"You judged {person['right']} of {person['judged']} right: {person['accuracy']:.2f} (95% interval "
             f"{person['low']:.2f}-{person['high']:.2f}; {CHANCE} = guessing, 1.0 = never fooled).",
             f"Fakes taken for real: {person['fakes_taken_for_real']} of {person['fakes']} "
             f"({person['fake_error']:.0%}); real drawings taken for fake: {person['reals_taken_for_fake']} of "
             f"{person['reals']} ({person['real_error']:.0%})."]
    figure = machine_figure(machine)
    if figure is not None:
        lines.append("The machine's two-sample test on the same fruit: {:.2f} (95% interval {:.2f}-{:.2f}).".format(
            *figure))
    lines.append(comparison(person, machine))
    if pooled and pooled["sessions"] > 1:
        lines.append(f"All {pooled['sessions']} sessions kept for this fruit: {pooled['accuracy']:.2f} judged right "
                     f"(95% interval {pooled['low']:.2f}-{pooled['high']:.2f}, over sessions).")
    return lines
