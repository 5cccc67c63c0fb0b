"""user_io: end of input stops, --yes takes defaults, Ctrl+C messages, range-checked integers."""
import io

import pytest

from fruitgan.util.user_io import (EXIT_INTERRUPTED, EndOfInput, Interrupted, Prompter, UserError, 
                     int_in_range, run_main)


def test_end_of_input_stops_instead_of_taking_the_default():
    out = io.StringIO()
    prompter = Prompter(stdin=io.StringIO("many\n"), stdout=out)
    with pytest.raises(EndOfInput) as info:
        prompter.ask("Epochs", 400, int_in_range(1, 10000), flag="--epochs N")
    assert str(info.value) == "no answer for 'Epochs' (end of input); give --epochs N or --yes to take the defaults"
    assert "invalid answer" in out.getvalue()  # the bad answer was refused first, then input ended
    with pytest.raises(EndOfInput, match=r"^no answer for 'Go on\?' \(end of input\); answer it or --yes"):
        Prompter(stdin=io.StringIO(""), stdout=io.StringIO()).confirm("Go on?")
    with pytest.raises(EndOfInput):
        Prompter(stdin=io.StringIO(""), stdout=io.StringIO()).ask("Name", "v1", str)


def test_closed_stdin_is_end_of_input():
    prompter = Prompter(stdout=io.StringIO())
    prompter.stdin = None  # python started with stdin closed
    with pytest.raises(EndOfInput):
        prompter.ask("Name", "v1", str)
    closed = io.StringIO("x\n")
    closed.close()
    with pytest.raises(EndOfInput):
        Prompter(stdin=closed, stdout=io.StringIO()).ask("Name", "v1", str)


def test_empty_answer_and_yes_take_the_default():
    assert Prompter(stdin=io.StringIO("\n"), stdout=io.StringIO()).ask("Epochs", 400, int_in_range(1, 9)) == 400
    assert Prompter(assume_yes=True, stdin=io.StringIO("")).ask("Epochs", 400, int_in_range(1, 9)) == 400


def test_end_of_input_exits_like_any_user_error(capsys):
    def main(argv):
        Prompter(stdin=io.StringIO(""), stdout=io.StringIO()).ask("Epochs", 1, int, flag="--epochs N")

    assert run_main(main, []) == 2
    assert capsys.readouterr().err == ("error: no answer for 'Epochs' (end of input); "
                                       "give --epochs N or --yes to take the defaults\n")


def interrupt(argv):
    raise KeyboardInterrupt


def test_ctrl_c_promises_nothing_by_default(capsys):
    assert run_main(interrupt, []) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.strip() == "interrupted; files already written are complete"
    assert "run again" not in err


def test_ctrl_c_hint_from_the_script(capsys):
    def resumable(argv):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise Interrupted("continue with: python train_gan.py --model-name v1 --resume") from None

    assert run_main(resumable, []) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == ("interrupted; files already written are complete; "
                                               "continue with: python train_gan.py --model-name v1 --resume")
    assert run_main(interrupt, [], interrupted_hint="run again to finish the other fruits") == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip().endswith("complete; run again to finish the other fruits")
    assert run_main(interrupt, [], interrupted_hint=lambda: None) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "interrupted; files already written are complete"


def test_a_text_default_is_checked_like_an_answer():
    def parse(text):
        if text == "taken":
            raise ValueError("model 'taken' already exists")
        return text

    out = io.StringIO()
    assert Prompter(stdin=io.StringIO("\nfree\n"), stdout=out).ask("Model name", "taken", parse) == "free"
    assert "the default 'taken' cannot be used: model 'taken' already exists. Try again." in out.getvalue()
    with pytest.raises(UserError, match=r"default 'taken' .* cannot be used .*; give --model-name NAME$"):
        Prompter(assume_yes=True).ask("Model name", "taken", parse, flag="--model-name NAME")
    assert Prompter(assume_yes=True).ask("Epochs", 400, parse) == 400   # declared numbers need no check


def test_bounds_with_open_and_closed_edges():
    from fruitgan.util.user_io import Bounds, number_in

    half_open = Bounds(0.0, 1.0, hi_open=True)
    assert str(half_open) == "[0, 1)" and 0.0 in half_open and 1.0 not in half_open
    assert str(Bounds(1, 10_000_000)) == "[1, 10000000]"
    parse = number_in(Bounds(0.5, 1.0, lo_open=True))
    assert parse("1") == 1.0
    for text, why in (("0.5", "0.5 is outside (0.5, 1]"), ("nan", "nan is outside"), ("x", "'x' is not a number")):
        with pytest.raises(ValueError, match=why.replace("(", r"\(").replace("]", r"\]")):
            parse(text)
    with pytest.raises(ValueError, match="'1.5' is not a whole number"):
        number_in(Bounds(1, 3), int)("1.5")


def test_argument_errors_are_one_line(capsys):
    from fruitgan.util.user_io import ArgumentParser, cli_value

    parser = ArgumentParser(prog="x.py")
    parser.add_argument("--n", type=cli_value(int_in_range(1, 3), "--n"))
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--n", "9"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: argument --n: 9 is outside [1, 3]; see x.py --help\n"
