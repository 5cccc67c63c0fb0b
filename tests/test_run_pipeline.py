"""run_pipeline.py (the README's first command) runs every step end to end, here with a tiny budget."""
import shutil

from conftest import SAMPLE, run_script


def test_pipeline_runs_every_step_without_prompts(tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "rawData" / "sample")
    r = run_script("run_pipeline.py", "--workdir", str(tmp_path), "--fruits", "apple,pear", "--count", "8",
                   "--epochs", "2", "--batch-size", "8", "--name", "t", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    for step in ("rawDataToImage.py", "imageToNPZ.py", "train_gan.py", "generate_images.py"):
        assert f"$ python {step} " in r.stdout              # each command is shown before it runs
    assert len(list((tmp_path / "imageData" / "apple" / "versiont").glob("*.png"))) == 8
    assert (tmp_path / "npzData" / "pear_versiont.npz").is_file()
    assert (tmp_path / "models" / "model_t" / "generator_apple.pt").is_file()
    assert not (tmp_path / "models" / "model_t" / "generator_banana.pt").exists()   # only the fruits asked for
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["t_apple.png", "t_pear.png"]


def test_pipeline_refuses_an_unknown_fruit_in_one_line(tmp_path):
    r = run_script("run_pipeline.py", "--workdir", str(tmp_path), "--fruits", "kiwi")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "kiwi" in r.stderr
