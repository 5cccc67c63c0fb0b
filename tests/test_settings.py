"""settings.py: each setting's flag help and prompt show its declared default; the resolution rule is
checked where the user types it; a resumed run takes its settings from the saved config."""
import argparse
import dataclasses
import io
import json
import math
import re

import pytest

import gan_model
from conftest import run_script
import rawDataToImage as r2i
import run_pipeline
from fruitgan.util import settings as st
import train_gan
from fruitgan.learn.config import TrainConfig
from fruitgan.util.user_io import Prompter, UserError

ALL = [v for v in vars(st).values() if isinstance(v, st.Setting)]
PROMPTED = [s for s in ALL if s.question]


def flag_help(parser: argparse.ArgumentParser, flag: str) -> str:
    action = next(a for a in parser._actions if flag in a.option_strings)
    return action.help


@pytest.mark.parametrize("build, settings", [
    (train_gan.build_parser, [s for s in st.TRAIN_SETTINGS if s.flag]),
    (r2i.build_parser, [s for s in st.CONVERT_SETTINGS if s is not st.FRUIT_LIST]),
], ids=["train_gan", "rawDataToImage"])
def test_every_flag_help_shows_the_declared_default(build, settings):
    parser = build()
    for s in settings:
        assert flag_help(parser, s.flag).endswith(f"(default: {s.shown_default})"), s.flag


def test_declared_defaults_are_the_config_defaults():
    for s in st.TRAIN_SETTINGS[1:]:   # dataset_version has no default: it is required
        assert getattr(TrainConfig, s.field) == s.default, s.field
    for s in (st.RESOLUTION, st.LR, st.EMA_DECAY, st.REAL_LABEL):
        assert getattr(gan_model.GANConfig, s.field) == s.default, s.field
    for s in (st.RESOLUTION, st.QUALITY, st.COUNT, st.AUGMENT, st.SEED, st.FORMATS, st.WORKERS):
        assert getattr(r2i.ConvertOptions, s.field) == s.default, s.field
    # the behaviour users know: the same defaults as before the settings had one home
    assert (st.LR.default, st.BATCH_SIZE.default, st.EPOCHS.default, st.MODEL_NAME.default) == (2e-4, 64, 400, "v1")


def test_run_pipeline_help_shows_its_own_quick_defaults(capsys):
    with pytest.raises(SystemExit):
        run_pipeline.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for field in ("resolution", "count", "epochs", "batch_size", "seed"):
        assert f"(default: {getattr(run_pipeline.PipelineConfig, field)})" in text, field


@pytest.mark.parametrize("setting", PROMPTED, ids=[s.field for s in PROMPTED])
def test_every_prompt_shows_the_declared_default_and_takes_it(setting):
    out = io.StringIO()
    value = setting.ask(Prompter(stdin=io.StringIO("\n"), stdout=out))
    assert f"{setting.question} [{setting.shown_default}]: " in out.getvalue()
    assert value == setting.default


@pytest.mark.parametrize("text, ok", [("28", True), ("16", True), ("256", True), ("30", False), ("27", False),
                                      ("12", False), ("260", False), ("x", False)])
def test_resolution_rule(text, ok):
    if ok:
        assert st.parse_resolution(text) == int(text)
        gan_model.GANConfig(resolution=int(text))   # the networks accept what the flag accepts
    else:
        with pytest.raises(ValueError):
            st.parse_resolution(text)


def test_resolution_30_is_refused_at_the_flag(capsys):
    with pytest.raises(SystemExit) as info:
        r2i.build_parser().parse_args(["--resolution", "30"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--resolution" in err and "30 is not a multiple of 4" in err


def test_resolution_30_is_asked_again_at_the_prompt(workdir):
    args = r2i.build_parser().parse_args(["--fruits", "apple", "--quality", "all", "--count", "2", "--no-augment",
                                          "--version", "r"])
    out = io.StringIO()
    prompter = Prompter(stdin=io.StringIO("30\n28\n"), stdout=out)
    options = r2i.gather_options(args, prompter, r2i.scan_workdir(workdir), workdir)
    assert options.resolution == 28
    assert out.getvalue().count("invalid answer: 30 is not a multiple of 4") == 1 and "Try again" in out.getvalue()
    assert not (workdir / "imageData").exists()   # nothing rendered before the answer was right


@pytest.mark.parametrize("flag, bad", [("--seed", "-1"), ("--seed", str(2**64)), ("--keep-checkpoint-every", "-1"),
                                       ("--keep-checkpoint-every", "many"), ("--lr", "2")])
def test_bounds_are_checked_at_the_flag(flag, bad, capsys):
    with pytest.raises(SystemExit):
        train_gan.build_parser().parse_args([flag, bad])
    assert flag in capsys.readouterr().err


# ------------------------------------------------------------------------------ resume
def saved_model(tmp_path, name="v1", **changes):
    """A model folder whose info/training_config_<name>.json is what a run with ``changes`` saved."""
    cfg = TrainConfig(dataset_version="tiny", model_name=name, epochs=4, fruits=["apple", "pear"],
                      milestones=[1, 3], keep_checkpoint_every=2)
    data = {"model_name": name, **cfg.to_dict(), "resolution": 28, "device": "cpu", "requested_device": "auto",
            "world_size": 1}
    data.update(changes)
    info = tmp_path / "models" / f"model_{name}" / "info"
    info.mkdir(parents=True)
    (info / f"training_config_{name}.json").write_text(json.dumps(data))
    return tmp_path


def resume(workdir, *flags):
    args = train_gan.build_parser().parse_args(["--yes", "--resume", "--model-name", "v1", *flags])
    return train_gan.ask_settings(args, Prompter(assume_yes=True), workdir).config   # config.Resumed


def test_resume_takes_every_setting_from_the_saved_config(tmp_path):
    cfg = resume(saved_model(tmp_path))
    assert (cfg.dataset_version, cfg.epochs, cfg.fruits, cfg.device) == ("tiny", 4, ["apple", "pear"], "auto")
    assert list(cfg.milestones) == [1, 3] and cfg.keep_checkpoint_every == 2   # not reset to the defaults


def test_resume_applies_flags_that_do_not_change_the_past(tmp_path):
    cfg = resume(saved_model(tmp_path), "--epochs", "9", "--device", "cpu", "--precision", "bf16", "--no-eval",
                 "--stop-after-epochs", "1", "--milestones", "5", "--keep-checkpoint-every", "3")
    assert (cfg.epochs, cfg.device, cfg.precision, cfg.evaluate, cfg.stop_after_epochs) == (9, "cpu", "bf16", False, 1)
    assert list(cfg.milestones) == [5] and cfg.keep_checkpoint_every == 3
    assert cfg.lr == pytest.approx(2e-4) and cfg.batch_size == 64


@pytest.mark.parametrize("flags, message", [
    (["--lr", "0.001"], "--lr cannot change when resuming model v1 (saved 0.0002); drop the flag or train a new model"),
    (["--batch-size", "8"], "--batch-size cannot change when resuming model v1 (saved 64)"),
    (["--seed", "5"], "--seed cannot change"),
    (["--fruits", "apple"], "--fruits cannot change"),
    (["--dataset-version", "other"], "--dataset-version cannot change"),
    (["--epochs", "3"], "--epochs 3 cannot shorten model v1 (saved 4 epochs)"),
])
def test_resume_refuses_flags_that_would_change_the_past(tmp_path, flags, message):
    with pytest.raises(UserError) as info:
        resume(saved_model(tmp_path), *flags)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_resume_accepts_flags_equal_to_the_saved_settings(tmp_path):
    cfg = resume(saved_model(tmp_path), "--lr", "0.0002", "--fruits", "pear,apple", "--dataset-version", "tiny")
    assert cfg.fruits == ["apple", "pear"]


@pytest.mark.parametrize("field, value", [("lr", "fast"), ("batch_size", 8.5), ("epochs", True),
                                          ("milestones", "1,2"), ("schedule", "random"), ("dataset_version", 3)])
def test_hand_edited_saved_config_with_a_wrong_value_is_one_line(tmp_path, field, value):
    with pytest.raises(UserError) as info:
        resume(saved_model(tmp_path, **{field: value}))
    text = str(info.value)
    assert field in text and "saved settings of model 'v1'" in text and "\n" not in text


def test_resume_of_a_missing_model_names_it(tmp_path):
    with pytest.raises(UserError, match="no model 'v1' to resume"):
        resume(tmp_path)


# ------------------------------------------------------------------------------ bounds: declared once (issue 28)
BOUNDED = [s for s in ALL if s.bounds is not None]
CONFIGS = {"GANConfig": gan_model.GANConfig, "TrainConfig": TrainConfig, "ConvertOptions": r2i.ConvertOptions}


def edge_values(s):
    """Each edge and its nearest neighbours on either side (for floats: the adjacent doubles)."""
    lo, hi = s.bounds.lo, s.bounds.hi
    if s.kind is int:
        return sorted({lo - 1, lo, lo + 1, hi - 1, hi, hi + 1})
    near = [(x, math.nextafter(x, -math.inf), math.nextafter(x, math.inf)) for x in (float(lo), float(hi))]
    return sorted({v for trio in near for v in trio})


def flag_verdict(s, text):
    """Whether the script that has the flag accepts ``text`` (None: no script has it)."""
    import spot_the_fake

    for build in (train_gan.build_parser, r2i.build_parser, spot_the_fake.build_parser):
        parser = build()
        if s.flag in parser._option_string_actions:
            try:
                parser.parse_args([s.flag, text])
                return True
            except SystemExit:
                return False
    return None


def prompt_verdict(s, text):
    try:
        s.ask(Prompter(stdin=io.StringIO(text + "\n"), stdout=io.StringIO()))
        return True
    except UserError:   # refused, asked again, then end of input
        return False


def config_verdicts(s, value):
    """{config: accepted} for each config class with this field, and for a saved config read from a file."""
    from fruitgan.learn.config import check_bounds

    verdicts = {}
    for name, cls in CONFIGS.items():
        if s.field not in {f.name for f in dataclasses.fields(cls)}:
            continue
        try:
            cfg = cls(**({"dataset_version": "x"} if cls is TrainConfig else {}), **{s.field: value})
            if cls is TrainConfig:
                check_bounds(cfg)
            verdicts[name] = True
        except UserError as exc:
            assert s.named in str(exc) and "\n" not in str(exc), (s.field, str(exc))   # names the flag
            verdicts[name] = False
    if s in st.GAN_SETTINGS:
        try:
            gan_model.GANConfig.from_dict({s.field: value}, "x.pt")
            verdicts["saved GANConfig"] = True
        except UserError as exc:
            assert str(exc).startswith("x.pt: ") and s.field in str(exc)
            verdicts["saved GANConfig"] = False
    return verdicts


@pytest.mark.parametrize("setting", BOUNDED, ids=[s.field for s in BOUNDED])
def test_flag_prompt_and_configs_accept_and_refuse_the_same_edge_values(setting, capsys):
    s = setting
    for value in edge_values(s):
        text = str(value) if s.kind is int else repr(value)
        verdicts = {"prompt": prompt_verdict(s, text), **config_verdicts(s, value)}
        if s.flag is not None:
            verdicts["flag"] = flag_verdict(s, text)
            assert verdicts["flag"] is not None, f"no script has {s.flag}"
        assert len(set(verdicts.values())) == 1, (s.field, value, verdicts)
        on_edge_or_out = value in (s.bounds.lo, s.bounds.hi) or not s.bounds.lo <= value <= s.bounds.hi
        if on_edge_or_out:   # the declaration decides: open edges refused, closed accepted, outside refused
            assert verdicts["prompt"] == (value in s.bounds), (s.field, value, s.bounds)
    capsys.readouterr()


def test_every_number_of_the_config_classes_has_declared_bounds():
    bounded = {s.field for s in BOUNDED}
    for cls in CONFIGS.values():
        numbers = [f.name for f in dataclasses.fields(cls) if f.type in ("int", "float", "Optional[int]")]
        assert numbers and set(numbers) <= bounded, (cls.__name__, set(numbers) - bounded)


@pytest.mark.parametrize("field, value, edge", [("lr", 1.0, "(0, 1)"), ("real_label", 0.5, "(0.5, 1]"),
                                                ("beta2", 1.0, "[0, 1)"), ("ema_decay", 1.0, "[0, 1)")])
def test_the_edges_the_config_classes_once_disagreed_on(field, value, edge):
    """Issue 28: the flags took lr 1.0 and real_label 0.5, which the networks refused."""
    setting = next(s for s in ALL if s.field == field)
    assert str(setting.bounds) == edge
    with pytest.raises(ValueError, match=re.escape(f"outside {edge}")):
        setting.parse(str(value))
    with pytest.raises(UserError, match=re.escape(setting.named)):
        gan_model.GANConfig(**{field: value})


def test_a_refused_flag_is_one_line_naming_it():
    r = run_script("rawDataToImage.py", "--count", "0")
    assert r.returncode == 2
    assert r.stderr.strip() == "error: argument --count: 0 is outside [1, 10000000]; see rawDataToImage.py --help"
