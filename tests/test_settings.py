"""settings.py: each setting's flag help and prompt show its declared default; the resolution rule is
checked where the user types it; a resumed run takes its settings from the saved config."""
import argparse
import io
import json

import pytest

import gan_model
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
    return train_gan.ask_settings(args, Prompter(assume_yes=True), workdir)


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
