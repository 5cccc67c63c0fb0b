"""Every user-facing setting, declared once: its default, bounds or choices, help text and parser.

The scripts' flags (``Setting.add_to``), their prompts (``Setting.ask``), the config dataclasses'
defaults (``Setting.default``) and checks (``check_values``: GANConfig, TrainConfig, ConvertOptions, and
every config read from a file) all read these declarations, so a default or a bound (``Setting.bounds``,
either edge open or closed) changes here and nowhere else. Light on purpose (no torch):
every script imports it before it knows whether it will train anything."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from fruitgan.data import quickdraw_formats as qf
from fruitgan.util.safe_files import FRUITS, check_name
from fruitgan.util.user_io import Bounds, Prompter, UserError, choice_of, cli_value, list_of, number_in

# The networks' image rule (gan_model.py builds on it): two x2 upsamplings from a whole-pixel start size.
RESOLUTION_MIN = 16        # below this the discriminator's features shrink to 2x2
RESOLUTION_MAX = 256       # the generator's last layers get too big for the intended CPU/GPU budget
RESOLUTION_STEP = 4
EPOCHS_MAX = 100_000
BATCH_MAX = 4096
COUNT_MAX = 10_000_000
WORKERS_MAX = 64
EVAL_SAMPLES_MIN, EVAL_SAMPLES_MAX = 8, 100_000
CHECKPOINT_MINUTES_MAX = 24 * 60   # a day: beyond that a kill -9 would lose more than anyone expects
CHANNELS_MIN, CHANNELS_MAX = 2, 1024
NOISE_DIM_MAX = 1024       # the generator's input: the assignment's 100, room to experiment, no absurd sizes
R1_GAMMA_MAX = 1000.0
STEPS_PER_EPOCH_MAX = 10_000_000
DIFF_AUGMENT_OPS = ("translation", "cutout")   # gan_augment.py implements them
# 32 bits: the trainer derives per-fruit seeds as seed * 1009 + offsets, which must stay inside the
# 64 bits torch.manual_seed accepts; generate_images draws its random seed from the same range.
SEED_MAX = 2**32 - 1
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("together", "sequential")
DEFAULT_MILESTONES = (1, 10, 20, 30, 40, 100, 200, 300, 400)
# The held-out split of each dataset version (heldout_split.py; rawDataToImage.py makes it, image_version and
# npz_format record it): real drawings kept out of GAN training so the two-sample test and the memorisation
# ratio compare the fakes with drawings the generator never saw. 25% keeps 1000 of banana's 4000 bitmaps.
HELDOUT_SHARE = 0.25         # share of a fruit's real drawings held out ...
HELDOUT_MIN = 300            # ... but at least this many where the fruit has them (tighter figures) ...
HELDOUT_MAX_SHARE = 0.5      # ... and never more than half: training keeps most of the drawings
# A third of the held-out drawings pick the best checkpoint (validation), the rest give the reported figures
# (test): apple's 1000 bitmaps hold out 300, 100 + 200; banana's 4000 hold out 1000, 333 + 667.
VALIDATION_SHARE = 1 / 3
# Fewer held out than this and no split is made ("not enough real drawings"): below it the test part's
# two-sample interval would be wider than +-0.1 (gan_evaluation.TWO_SAMPLE_MAX_HALF_WIDTH).
SPLIT_MIN_HELDOUT = 80


def _resolution_step(value: int) -> None:
    if value % RESOLUTION_STEP:
        raise ValueError(f"{value} is not a multiple of {RESOLUTION_STEP} (the networks need one, "
                         f"e.g. 28, 32, 64, 128)")


def parse_milestones(text: str) -> list:
    try:
        values = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of epochs") from None
    if not values or values[0] < 1:
        raise ValueError("milestones are epochs >= 1")
    return values


def parse_formats(text: str):
    """'auto' or a comma-separated subset of simplified,raw,bitmap."""
    if text.strip().lower() == qf.AUTO:
        return qf.AUTO
    return list_of(qf.FORMATS, "format")(text)


def _name_parser(what: str) -> Callable[[str], str]:
    return lambda text: check_name(text.strip(), what)


@dataclass(frozen=True)
class Setting:
    """One setting: ``field`` is its name in the config classes, ``flag`` its command-line option."""

    field: str
    flag: Optional[str]                 # None: not a command-line option (set by the code only)
    default: Any
    kind: type                          # type of a valid value: int, float, str, bool or list
    parse: Callable[[str], Any]         # text -> value; ValueError (or UserError) on a bad one
    help: str                           # what it is, without the default (added from ``default``)
    question: str = ""                  # the prompt, for settings the scripts ask for
    shown: Optional[str] = None         # how the default reads when it is not just str(default)
    bounds: Optional[Bounds] = None     # numbers: the range ``parse`` enforces (declared once, see _number)

    @property
    def named(self) -> str:
        """How a message names it: the flag, else the config field."""
        return self.flag or self.field

    @property
    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        if isinstance(self.default, (list, tuple)):
            return ",".join(map(str, self.default))
        return str(self.default)

    def help_text(self, shown: Optional[str] = None) -> str:
        return f"{self.help} (default: {shown if shown is not None else self.shown_default})"

    def add_to(self, parser: argparse.ArgumentParser, default: Any = None, shown: Optional[str] = None) -> None:
        """The flag, parsed by ``parse``. Its argparse default is None so callers can tell a given flag;
        ``default`` (and how it reads, ``shown``) is for a script with its own default (run_pipeline)."""
        if shown is None and default is not None:
            shown = str(default)
        parser.add_argument(self.flag, type=cli_value(self.parse, self.flag), default=default,
                            help=self.help_text(shown))

    def ask(self, prompter: Prompter, default: Any = None, parse: Optional[Callable[[str], Any]] = None) -> Any:
        """The prompt for this setting, showing the declared default (or a script's own ``default``).

        ``parse`` replaces the declared parser where a script knows more (e.g. which devices exist);
        end of input names this setting's flag."""
        parse = parse or self.parse
        flag = None if self.flag is None else self.flag if self.kind is bool else f"{self.flag} {self.field.upper()}"
        if default is None:
            return prompter.ask(self.question, self.default, parse, show_default=self.shown_default, flag=flag)
        return prompter.ask(self.question, default, parse, flag=flag)

    def given(self, value: Any) -> Any:
        """The flag's value when it was given, else the declared default."""
        return self.default if value is None else value

    def check(self, value: Any) -> Any:
        """A value read from a file: of the right type and within bounds; ValueError says what is wrong."""
        if value is None and self.default is None:
            return None
        wrong_bool = isinstance(value, bool) and self.kind is not bool
        allowed = (int, float) if self.kind is float else (list, tuple) if self.kind is list else self.kind
        if wrong_bool or not isinstance(value, allowed):
            raise ValueError(f"{self.field} must be {self.kind.__name__}, got {value!r}")
        if self.kind is bool:
            return value
        return self.parse(",".join(map(str, value)) if self.kind is list else str(value))


def _flag_setting(field: str, default: Any, kind: type, parse, help: str, **kw) -> Setting:
    return Setting(field, "--" + field.replace("_", "-"), default, kind, parse, help, **kw)


def _number(field: str, default: Any, kind: type, bounds: Bounds, help: str, rule=None, flag: bool = True,
            **kw) -> Setting:
    """A numeric setting: ``bounds`` is its one declaration of the range; ``rule`` an extra check (value ->
    ValueError). ``flag``: whether it is a command-line option."""
    within = number_in(bounds, kind)

    def parse(text: str):
        value = within(text)
        if rule is not None:
            rule(value)
        return value
    name = "--" + field.replace("_", "-") if flag else None
    return Setting(field, name, default, kind, parse, help, bounds=bounds, **kw)


def _bool(text: str) -> bool:
    raise ValueError("a switch takes no value")


def _even(value: int) -> None:
    if value % 2:
        raise ValueError(f"{value} is odd (the generator halves it)")


def parse_diff_augment(text: str) -> str:
    """'none' or a comma-separated subset of DIFF_AUGMENT_OPS, spelled canonically ('translation,cutout')."""
    words = [w.strip() for w in str(text).split(",") if w.strip()]
    if words in ([], ["none"]):
        return "none"
    unknown = [w for w in words if w not in DIFF_AUGMENT_OPS]
    if unknown:
        raise ValueError(f"unknown DiffAugment operation {', '.join(unknown)}; use none or "
                         f"a comma-separated subset of {','.join(DIFF_AUGMENT_OPS)}")
    return ",".join(op for op in DIFF_AUGMENT_OPS if op in words)


# ------------------------------------------------------------------------------ shared by several scripts
RESOLUTION = _number("resolution", 64, int, Bounds(RESOLUTION_MIN, RESOLUTION_MAX),
                     f"image side in pixels, a multiple of {RESOLUTION_STEP} in {RESOLUTION_MIN}-{RESOLUTION_MAX}",
                     rule=_resolution_step, question=f"Image size in pixels (multiple of {RESOLUTION_STEP}, "
                                                     f"{RESOLUTION_MIN}-{RESOLUTION_MAX})")
parse_resolution = RESOLUTION.parse   # an image side the networks can train: a multiple of 4 in 16..256
SEED = _number("seed", 0, int, Bounds(0, SEED_MAX), f"random seed, 0-{SEED_MAX}")
EPOCHS = _number("epochs", 400, int, Bounds(1, EPOCHS_MAX), "epochs per fruit", question="Epochs")
BATCH_SIZE = _number("batch_size", 64, int, Bounds(1, BATCH_MAX), "images per fruit per step", question="Batch size")
FRUIT_LIST = _flag_setting("fruits", None, list, list_of(FRUITS, "fruit"), "comma-separated fruits, or 'all'",
                           shown="all of the dataset version")

# ------------------------------------------------------------------------------ rawDataToImage.py
_PRESETS = ", ".join(f"{p.name} ({p.rule()})" for p in qf.QUALITY_PRESETS.values())
QUALITY = _flag_setting("quality", qf.DEFAULT_QUALITY, str, choice_of(list(qf.QUALITY_PRESETS)),
                        f"which drawings to keep: {_PRESETS}", question="Quality")
COUNT = _number("count", 1000, int, Bounds(1, COUNT_MAX), "images per fruit", question="Images per fruit")
IMAGE_VERSION = Setting("version", "--version", None, str, _name_parser("version"), "dataset version name",
                        question="Dataset version name", shown="the next free number")
# On by default: a fruit with fewer real drawings than --count (five fruits have 23-40) is filled up with
# stroke-level copies, the lowest mean of four recipes for few drawings (docs/quality.md, section 5); a fruit
# with enough real drawings gets none.
AUGMENT = _flag_setting("augment", True, bool, _bool,
                        "fill up to --count with augmented copies of real drawings (--no-augment: real only)",
                        shown="on")
FORMATS = _flag_setting("formats", qf.AUTO, str, parse_formats,
                        "auto (strokes, bitmaps only for fruits without strokes) or e.g. simplified,raw,bitmap")
WORKERS = _number("workers", 2, int, Bounds(1, WORKERS_MAX), "worker processes")

# ------------------------------------------------------------------------------ train_gan.py (TrainConfig)
DATASET_VERSION = _flag_setting("dataset_version", None, str, _name_parser("dataset version"),
                                "dataset version to train on", question="Dataset version", shown="the newest")
MODEL_NAME = _flag_setting("model_name", "v1", str, _name_parser("model name"), "models/model_<name>/",
                           question="Model name")
LR = _number("lr", 2e-4, float, Bounds(0.0, 1.0, lo_open=True, hi_open=True), "Adam learning rate, both networks",
             question="Learning rate", shown="0.0002")
DESCRIPTION = _flag_setting("description", "", str, str, "free text saved in info/description.txt",
                            question="Description (free text)", shown="none")
DEVICE = _flag_setting("device", "auto", str, choice_of(DEVICES), "auto, cpu or cuda",
                       question="Device (auto/cpu/cuda)")
PRECISION = _flag_setting("precision", "auto", str, choice_of(PRECISIONS),
                          "auto (bf16 where the device multiplies bf16 in hardware: most recent GPUs, CPUs with "
                          "AVX512-BF16 or AMX; fp32 elsewhere), fp32, or bf16 (autocast)")
SCHEDULE = _flag_setting("schedule", "together", str, choice_of(SCHEDULES),
                         "step same-size fruits together (fast) or one after another")
MILESTONES = _flag_setting("milestones", DEFAULT_MILESTONES, list, parse_milestones,
                           "epochs that get a progress grid and quality figures (the last epoch is added)")
KEEP_CHECKPOINT_EVERY = _number("keep_checkpoint_every", 100, int, Bounds(0, EPOCHS_MAX),
                                "keep checkpoints/epoch_NNNN.pt (the generators, to draw from) every N epochs (0: none)")
CHECKPOINT_MINUTES = _number("checkpoint_minutes", 5.0, float, Bounds(0.0, CHECKPOINT_MINUTES_MAX),
                             "write checkpoints/latest.pt at most every N minutes (also at milestones, the "
                                   "end and on Ctrl+C/SIGTERM); 0: after every epoch")
EVALUATE = Setting("evaluate", "--no-eval", True, bool, _bool, "skip quality metrics at milestones",
                   shown="off, metrics are computed")
EVAL_SAMPLES = _number("eval_samples", 256, int, Bounds(EVAL_SAMPLES_MIN, EVAL_SAMPLES_MAX),
                       "generated images per fruit per evaluation")
# 0.999: the 400-epoch ablation's pick at the assignment's batch 64 (README, "How real do the fakes look?").
EMA_DECAY = _number("ema_decay", 0.999, float, Bounds(0.0, 1.0, hi_open=True),
                    "> 0 samples from a moving average of the generator (its decay warms up over the first steps); "
                          "0: the plain generator")
REAL_LABEL = _number("real_label", 1.0, float, Bounds(0.5, 1.0, lo_open=True), flag=False,
                     help="target for real images; < 1 is one-sided label smoothing")
# The recipe's other knobs (bench_quality.py measures them; the README's quality table gives the figures).
G_CHANNELS = _number("g_channels", 128, int, Bounds(CHANNELS_MIN, CHANNELS_MAX),
                     "generator width C (C, C, C/2, C/2 channels; the assignment's 128)", rule=_even)
D_CHANNELS = _number("d_channels", 32, int, Bounds(CHANNELS_MIN, CHANNELS_MAX),
                     "discriminator width D (D, 2D, 4D channels; the assignment's 32)")
BETA1 = _number("beta1", 0.5, float, Bounds(0.0, 1.0, hi_open=True), "Adam beta1, both networks")
BETA2 = _number("beta2", 0.999, float, Bounds(0.0, 1.0, hi_open=True), "Adam beta2, both networks")
# Off by default: on apple and on banana (28 px, 150 epochs, 3 seeds each, test parts) no DiffAugment variant beat
# the plain recipe beyond the spread over seeds, nor with 30 apple drawings and stroke-level copies (docs/quality.md).
DIFF_AUGMENT = _flag_setting("diff_augment", "none", str, parse_diff_augment,
                             "DiffAugment of every image the discriminator sees: none, translation, cutout "
                             "or translation,cutout (shift and cut-out filled with the black background)")
# 1: every image the discriminator sees is shifted and cut (DiffAugment); 0.5: each operation touches half of
# them, chosen per image, as adaptive augmentation (ADA) applies its operations.
AUGMENT_P = _number("augment_p", 1.0, float, Bounds(0.0, 1.0, lo_open=True),
                    "share of images each DiffAugment operation touches, chosen per image (1: all)")
R1_GAMMA = _number("r1_gamma", 0.0, float, Bounds(0.0, R1_GAMMA_MAX),
                   "R1 penalty weight on the discriminator's gradient at real images (0: off)")
STEPS_PER_EPOCH = _number("steps_per_epoch", None, int, Bounds(1, STEPS_PER_EPOCH_MAX),
                          "steps per fruit per epoch (every fruit takes as many, so fruits of any size "
                                "step together)", shown="enough for the largest fruit to see each training "
                                                        "image once")
STOP_AFTER_EPOCHS = _number("stop_after_epochs", None, int, Bounds(1, EPOCHS_MAX),
                            "train at most N epochs now, then stop cleanly (continue later with --resume)",
                                  shown="no limit")
COMPILE = _flag_setting("compile", False, bool, _bool, "torch.compile the forward passes (eager if it fails)",
                        shown="off")
CUDA_GRAPH = _flag_setting("cuda_graph", False, bool, _bool, "CUDA: replay each training step as a CUDA graph",
                           shown="off")

# The networks' own knobs: no flags (the assignment fixes them), but bounded like any setting, since every
# saved model and checkpoint carries them (GANConfig checks all its fields against GAN_SETTINGS).
NOISE_DIM = _number("noise_dim", 100, int, Bounds(2, NOISE_DIM_MAX), "length of the generator's noise vector",
                    flag=False)
DROPOUT = _number("dropout", 0.25, float, Bounds(0.0, 1.0, hi_open=True),
                  "Dropout2d probability after each discriminator block", flag=False)
LEAKY_SLOPE = _number("leaky_slope", 0.2, float, Bounds(0.0, 1.0, hi_open=True), "LeakyReLU negative slope", flag=False)
GAN_SETTINGS = (RESOLUTION, NOISE_DIM, G_CHANNELS, D_CHANNELS, DROPOUT, LEAKY_SLOPE, LR, BETA1, BETA2, REAL_LABEL,
                EMA_DECAY, DIFF_AUGMENT, AUGMENT_P, R1_GAMMA)

TRAIN_SETTINGS = (DATASET_VERSION, MODEL_NAME, EPOCHS, BATCH_SIZE, LR, DESCRIPTION, DEVICE, FRUIT_LIST, SEED,
                  PRECISION, SCHEDULE, MILESTONES, KEEP_CHECKPOINT_EVERY, CHECKPOINT_MINUTES, EVALUATE, EVAL_SAMPLES,
                  EMA_DECAY, REAL_LABEL, G_CHANNELS, D_CHANNELS, BETA1, BETA2, DIFF_AUGMENT, AUGMENT_P, R1_GAMMA,
                  STEPS_PER_EPOCH, STOP_AFTER_EPOCHS, COMPILE, CUDA_GRAPH)
CONVERT_SETTINGS = (FRUIT_LIST, RESOLUTION, QUALITY, COUNT, IMAGE_VERSION, AUGMENT, SEED, FORMATS, WORKERS)

# ------------------------------------------------------------------------------ spot_the_fake.py
SPOT_IMAGES_MAX = 200      # a scored round of 400 drawings is already more than anyone judges with care
PORT_MIN, PORT_MAX = 1024, 65535   # above the ports reserved for system services
# The script's own settings (no config class holds them): their ranges live in their parsers only.
SPOT_IMAGES = Setting("num_images", "--num-images", 20, int, number_in(Bounds(1, SPOT_IMAGES_MAX), int),
                      "real drawings in the scored round, mixed with as many fakes",
                      question="Real drawings to show (as many fakes are mixed in)")
PORT = Setting("port", "--port", 8765, int, number_in(Bounds(PORT_MIN, PORT_MAX), int),
               "first port tried on 127.0.0.1 (taken: the next free one)")


def add_switch(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """An on/off flag (store_true) whose argparse default is None, so a given flag can be told apart."""
    parser.add_argument(setting.flag, action="store_true", default=None, help=setting.help_text())


def check_values(values: dict, settings: Sequence[Setting], source: str, hint: str, by_flag: bool = False) -> dict:
    """``values`` (e.g. a saved config) checked against ``settings``: {field: value} for those present.

    A wrong type or an out-of-bounds value is a one-line UserError naming ``source`` and the setting (its flag
    when ``by_flag``: values the user gave; else its field, as a file spells it), ending with ``hint``."""
    checked = {}
    for s in settings:
        if s.field in values:
            try:
                checked[s.field] = s.check(values[s.field])
            except (ValueError, UserError) as exc:
                name = s.named if by_flag else s.field
                raise UserError(f"{source}: {name} {values[s.field]!r} is not valid ({exc}); {hint}") from None
    return checked
