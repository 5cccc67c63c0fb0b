"""fruitgan.models: listing the models/ tree and loading generators from its files.

The model folders are built here with gan_model's real networks at 28 px (random weights, a different
seed per checkpoint so the tests can tell which file was loaded), laid out as fruitgan.models.folder says
gan_trainer.py writes them.
"""
from fractions import Fraction

import pytest
import torch

from fruitgan.models import checkpoint_files, loading, reported
from fruitgan.models import folder as model_folder, index as models_index
from gan_model import Discriminator, GANConfig, Generator, generate, network_payload
from fruitgan.util.safe_files import atomic_torch_save, atomic_write_json
from fruitgan.util.user_io import UserError

TINY_CFG = GANConfig(resolution=28, g_channels=16, d_channels=8)


OUTPUT_GAIN = 30.0   # an untrained DCGAN draws near-uniform grey; a louder last layer draws varied images


def seeded_generator(seed: int, cfg: GANConfig = TINY_CFG) -> Generator:
    """A random generator (fixed by ``seed``) whose images visibly differ from noise to noise."""
    torch.manual_seed(seed)
    g = Generator(cfg)
    for m in g.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.reset_parameters()                   # PyTorch's default init: larger than DCGAN's N(0, 0.02)
        if isinstance(m, torch.nn.BatchNorm2d):    # random BN statistics: eval mode differs per seed everywhere
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():
        g.conv_out.weight.mul_(OUTPUT_GAIN)
    return g.eval()


def build_model(workdir, name="v1", fruits=("apple", "banana"), dataset_version="1", epochs_done=4,
                kept_epochs=(2, 4), best=True, ema=False, summary=True, cfg: GANConfig = TINY_CFG,
                world: int = 1) -> dict:
    """Write models/model_<name>/ like gan_trainer.py does; returns {(fruit, checkpoint): Generator} written.

    world > 1: the kept checkpoints are written as under torchrun, one epoch_NNNN_rank<r>of<world>.pt per
    rank holding only that rank's fruits (fruits[r::world]). The names are spelled out here, not taken from
    fruitgan.models, so the reader is checked against the trainer's layout.
    """
    folder = workdir / "models" / f"model_{name}"
    written = {}
    for i, fruit in enumerate(fruits):
        latest = seeded_generator(100 + i, cfg)
        ema_net = seeded_generator(200 + i, cfg) if ema else None
        atomic_torch_save(network_payload(latest, cfg, "generator", fruit=fruit, epoch=epochs_done,
                                          ema_state_dict=ema_net.state_dict() if ema else None),
                          folder / f"generator_{fruit}.pt")
        atomic_torch_save(network_payload(Discriminator(cfg), cfg, "discriminator", fruit=fruit, epoch=epochs_done),
                          folder / f"discriminator_{fruit}.pt")
        written[(fruit, "latest")] = latest
        if ema:
            written[(fruit, "ema")] = ema_net
        if best:
            b = seeded_generator(300 + i, cfg)
            metrics = {"epoch": 2, "recognizability": 0.5 + 0.1 * i, "fid": 3.0, "coverage": 0.4, "recall": 0.3}
            atomic_torch_save(network_payload(b, cfg, "generator", fruit=fruit, epoch=2, ema_state_dict=None,
                                              metrics=metrics, score=1.0), folder / "best" / f"generator_{fruit}.pt")
            written[(fruit, "best")] = b
    for e in kept_epochs:
        for rank in range(world):
            states = {}
            for i, fruit in enumerate(fruits):
                if i % world != rank:
                    continue
                g = seeded_generator(1000 * e + i, cfg)
                written[(fruit, e)] = g
                states[fruit] = {"generator": g.state_dict(), "discriminator": Discriminator(cfg).state_dict(),
                                 "ema": None}
            file = f"epoch_{e:04d}.pt" if world == 1 else f"epoch_{e:04d}_rank{rank}of{world}.pt"
            atomic_torch_save({"format": "fruitgan-checkpoint/1", "epoch": e, "gan_config": cfg.to_dict(),
                               "fruits": states, "groups": [], "rng": {}, "history": {}},
                              folder / "checkpoints" / file)
    created = "2025-01-02T03:04:05+00:00"
    atomic_write_json(folder / "info" / f"training_config_{name}.json", {
        "model_name": name, "dataset_version": dataset_version, "fruits": list(fruits),
        "resolution": cfg.resolution, "epochs": 10, "batch_size": 8, "lr": 2e-4, "description": "test model",
        "device": "cpu", "seed": 0, "precision": "fp32", "gan_config": cfg.to_dict(), "created": created})
    if summary:
        per_fruit = {f: {"final": {"d_loss": 1.0, "g_loss": 1.0}, "best_epoch": 2 if best else None,
                         "quality": {"epoch": epochs_done, "recognizability": 0.25, "fid": 9.0, "coverage": 0.1},
                         "best_quality": {"epoch": 2, "recognizability": 0.5, "fid": 3.0, "coverage": 0.4} if best else None}
                     for f in fruits}
        atomic_write_json(folder / "info" / f"training_summary_{name}.json", {
            "model_name": name, "dataset_version": dataset_version, "resolution": cfg.resolution,
            "fruits": list(fruits), "epochs_done": epochs_done, "epochs_planned": 10, "status": "interrupted",
            "created": created, "updated": created, "per_fruit": per_fruit, "cost": {}})
    return written


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_no_models_lists_nothing(tmp_path):
    assert reported.list_models(tmp_path) == []
    with pytest.raises(UserError, match="no models .* yet; train one"):
        model_folder.model_dir(tmp_path, "v1")


def test_list_models_reads_summary_and_config(tmp_path):
    build_model(tmp_path, "v1", fruits=("apple", "banana"))
    build_model(tmp_path, "b2", fruits=("pear",), dataset_version="7", summary=False, best=False, kept_epochs=())
    (tmp_path / "models" / "not a model").mkdir()            # ignored: not model_<name>
    (tmp_path / "models" / "model_bad name").mkdir()          # ignored: not a valid name
    models = reported.list_models(tmp_path)
    assert [m["name"] for m in models] == ["b2", "v1"]
    b2, v1 = models
    assert v1["fruits"] == ["apple", "banana"] and v1["dataset_version"] == "1" and v1["resolution"] == 28
    assert v1["epochs_done"] == 4 and v1["epochs_planned"] == 10 and v1["status"] == "interrupted"
    assert v1["quality"]["banana"]["best"]["recognizability"] == 0.5
    assert v1["quality"]["apple"]["latest"]["fid"] == 9.0 and v1["saved_epochs"] == [2, 4]
    # Without a summary the config still tells version and size; the status says it is unknown.
    assert b2["fruits"] == ["pear"] and b2["dataset_version"] == "7" and b2["epochs_done"] is None
    assert b2["status"] == "unknown" and b2["quality"] == {} and b2["saved_epochs"] == []


def test_damaged_summary_does_not_break_the_listing(tmp_path):
    build_model(tmp_path, "v1")
    (tmp_path / "models" / "model_v1" / "info" / "training_summary_v1.json").write_text("{half a file")
    (m,) = reported.list_models(tmp_path)
    assert m["name"] == "v1" and m["status"] == "unknown" and m["dataset_version"] == "1"


def test_unknown_and_unsafe_model_names_list_the_models(tmp_path):
    build_model(tmp_path, "v1")
    build_model(tmp_path, "v2", fruits=("pear",))
    with pytest.raises(UserError, match=r"no model 'v3' \(models there are: v1, v2\)"):
        model_folder.model_dir(tmp_path, "v3")
    for bad in ("../v1", "v1/../../x", ".hidden", "a b", ""):
        with pytest.raises(UserError, match="invalid model name.*models there are: v1, v2"):
            model_folder.model_dir(tmp_path, bad)


@pytest.mark.parametrize("checkpoint", ["latest", "best", 2, 4, "4"])
def test_load_generator_reads_the_named_checkpoint(tmp_path, checkpoint):
    written = build_model(tmp_path, "v1")
    g, meta = loading.load_generator(tmp_path, "v1", "banana", checkpoint)
    key = int(checkpoint) if str(checkpoint).isdigit() else checkpoint
    assert same_weights(g, written[("banana", key)])
    assert not same_weights(g, written[("apple", key)])
    assert not g.training and meta["fruit"] == "banana" and meta["dataset_version"] == "1"
    assert meta["resolution"] == 28 and meta["config"]["g_channels"] == 16
    if key == "best":
        assert meta["metrics"]["recognizability"] == pytest.approx(0.6) and meta["epoch"] == 2
    if isinstance(key, int):
        assert meta["epoch"] == key
    with torch.no_grad():
        assert g(torch.randn(3, 100)).shape == (3, 1, 28, 28)


def test_moving_average_weights_are_used_when_kept(tmp_path):
    written = build_model(tmp_path, "v1", ema=True)
    g, meta = loading.load_generator(tmp_path, "v1", "apple")
    assert meta["used_ema"] and same_weights(g, written[("apple", "ema")])
    raw, meta = loading.load_generator(tmp_path, "v1", "apple", use_ema=False)
    assert not meta["used_ema"] and same_weights(raw, written[("apple", "latest")])


def test_unknown_fruit_and_checkpoint_list_what_exists(tmp_path):
    build_model(tmp_path, "v1", fruits=("apple", "pear"), kept_epochs=(2,))
    with pytest.raises(UserError, match=r"no 'grapes' generator \(fruits there are: apple, pear\)"):
        loading.load_generator(tmp_path, "v1", "grapes")
    with pytest.raises(UserError, match="no 'apple/../x' generator"):
        loading.load_generator(tmp_path, "v1", "apple/../x")
    with pytest.raises(UserError, match=r"epoch 3 .*checkpoints of apple: latest, best, 2\)"):
        loading.load_generator(tmp_path, "v1", "apple", 3)
    with pytest.raises(UserError, match="not 'latest', 'milestone', 'best' or an epoch number; checkpoints of v1 apple: latest, best, 2"):
        loading.load_generator(tmp_path, "v1", "apple", "newest")


def test_missing_best_says_when_it_appears(tmp_path):
    build_model(tmp_path, "v1", best=False, kept_epochs=())
    with pytest.raises(UserError, match=r"no best apple generator yet .*checkpoints of apple: latest\)"):
        loading.load_generator(tmp_path, "v1", "apple", "best")


def test_damaged_or_foreign_files_are_one_line_errors(tmp_path):
    build_model(tmp_path, "v1")
    folder = tmp_path / "models" / "model_v1"
    (folder / "generator_apple.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read .*generator_apple.pt.*damaged"):
        loading.load_generator(tmp_path, "v1", "apple")
    # A discriminator file renamed to a generator file is refused, not half-loaded.
    (folder / "generator_banana.pt").write_bytes((folder / "discriminator_banana.pt").read_bytes())
    with pytest.raises(UserError, match="holds a discriminator, not a generator"):
        loading.load_generator(tmp_path, "v1", "banana")
    # A file that would need pickle to load (arbitrary objects) is refused by weights_only loading.
    torch.save({"format": "fruitgan/1", "obj": Fraction(1, 3)}, folder / "best" / "generator_banana.pt")
    with pytest.raises(UserError, match="cannot read"):
        loading.load_generator(tmp_path, "v1", "banana", "best")


def test_parse_checkpoint():
    assert loading.parse_checkpoint("Best") == "best"
    assert loading.parse_checkpoint(" 12 ") == 12 and loading.parse_checkpoint(3) == 3
    for bad in ("-1", "1.5", "first", -2):
        with pytest.raises(ValueError):
            loading.parse_checkpoint(bad)


@pytest.mark.parametrize("epoch", [2, 4])
def test_per_rank_checkpoints_are_found_for_each_fruit(tmp_path, epoch):
    """Under torchrun each rank keeps epoch_NNNN_rank<r>of<w>.pt with only its fruits; --checkpoint N finds them."""
    fruits = ("apple", "banana", "pear")
    written = build_model(tmp_path, "d2", fruits=fruits, world=2)
    names = sorted(p.name for p in (tmp_path / "models" / "model_d2" / "checkpoints").iterdir())
    assert f"epoch_{epoch:04d}_rank0of2.pt" in names and f"epoch_{epoch:04d}_rank1of2.pt" in names
    for fruit in fruits:                                  # apple, pear in rank 0's file; banana in rank 1's
        g, meta = loading.load_generator(tmp_path, "d2", fruit, epoch)
        assert same_weights(g, written[(fruit, epoch)]) and meta["epoch"] == epoch
        assert meta["path"].endswith(f"_rank{fruits.index(fruit) % 2}of2.pt")
    (m,) = reported.list_models(tmp_path)
    assert m["saved_epochs"] == [2, 4]                    # one entry per epoch, not one per rank file
    with pytest.raises(UserError, match=r"epoch 3 .*checkpoints of pear: latest, best, 2, 4\)"):
        loading.load_generator(tmp_path, "d2", "pear", 3)


def test_per_rank_checkpoint_without_the_fruit_says_what_it_holds(tmp_path):
    build_model(tmp_path, "d2", fruits=("apple", "banana"), world=2, kept_epochs=(2,))
    (tmp_path / "models" / "model_d2" / "checkpoints" / "epoch_0002_rank1of2.pt").unlink()   # banana's rank lost
    with pytest.raises(UserError, match=r"checkpoint epoch_0002_rank0of2.pt has no 'banana' \(it has: apple\)"):
        loading.load_generator(tmp_path, "d2", "banana", 2)


def test_model_folder_names_every_file_of_the_tree(tmp_path):
    folder = model_folder.ModelFolder.in_workdir(tmp_path, "v1")
    root = (tmp_path / "models" / "model_v1").resolve()
    assert folder.path == root and not folder.exists()
    assert folder.config_path() == root / "info" / "training_config_v1.json"
    assert folder.summary_path() == root / "info" / "training_summary_v1.json"
    assert folder.history_path("pear") == root / "info" / "training_history_pear.json"
    assert folder.cost_report_path() == root / "info" / "cost_analysis_report.json"
    assert folder.description_path() == root / "info" / "description.txt"
    assert folder.generator_path("pear") == root / "generator_pear.pt"
    assert folder.generator_path("pear", best=True) == root / "best" / "generator_pear.pt"
    assert folder.network_path("discriminator", "pear") == root / "discriminator_pear.pt"
    assert folder.checkpoint_path("latest") == root / "checkpoints" / "latest.pt"
    assert folder.checkpoint_path(50) == root / "checkpoints" / "epoch_0050.pt"
    assert folder.progress_grid_path("pear", 7) == root / "generated_epoch_images_pear" / "epoch_0007.png"
    ranked = model_folder.ModelFolder.in_workdir(tmp_path, "v1", rank=1, world=3)
    assert ranked.checkpoint_path("latest") == root / "checkpoints" / "latest_rank1of3.pt"
    assert ranked.checkpoint_path(50) == root / "checkpoints" / "epoch_0050_rank1of3.pt"
    assert model_folder.evaluator_path(tmp_path, "v2", 28) == \
        (tmp_path / "models" / "evaluators" / "classifier_versionv2_28px.pt").resolve()


def test_model_folder_refuses_names_that_leave_it(tmp_path):
    for bad in ("../x", "a/b", ".hidden"):
        with pytest.raises(UserError, match="invalid model name"):
            model_folder.ModelFolder.in_workdir(tmp_path, bad)
        with pytest.raises(UserError, match="invalid fruit"):
            model_folder.ModelFolder.in_workdir(tmp_path, "v1").history_path(bad)
    with pytest.raises(UserError, match="invalid dataset version"):
        model_folder.evaluator_path(tmp_path, "../v1", 28)


def test_written_files_read_back(tmp_path):
    from PIL import Image

    folder = model_folder.ModelFolder.in_workdir(tmp_path, "rt")
    folder.write_config({"model_name": "rt", "fruits": ["apple"], "lr": 2e-4})
    folder.write_summary({"status": "running", "epochs_done": 3})
    folder.write_history("apple", {"epochs": [{"epoch": 1, "d_loss": 0.5}]})
    folder.write_cost_report({"training_hours": 0.25})
    folder.write_description("a test model\n")
    assert folder.exists()
    assert folder.read_config() == {"model_name": "rt", "fruits": ["apple"], "lr": 2e-4}
    assert folder.read_summary() == {"status": "running", "epochs_done": 3}
    assert folder.read_history("apple") == {"epochs": [{"epoch": 1, "d_loss": 0.5}]}
    assert folder.read_cost_report() == {"training_hours": 0.25}
    assert folder.description_path().read_text() == "a test model\n"
    assert folder.read_history("pear") is None                       # missing: None, not an exception
    # Networks: the payload's kind and fruit name the file; load_generator reads them back.
    g, b = seeded_generator(1), seeded_generator(2)
    files = checkpoint_files.CheckpointFiles(folder)
    files.write_network(network_payload(g, TINY_CFG, "generator", fruit="apple", epoch=3))
    files.write_network(network_payload(Discriminator(TINY_CFG), TINY_CFG, "discriminator", fruit="apple", epoch=3))
    files.write_network(network_payload(b, TINY_CFG, "generator", fruit="apple", epoch=2, metrics={"fid": 1.0}),
                        best=True)
    assert folder.fruits() == ["apple"]
    latest, meta = loading.load_generator(tmp_path, "rt", "apple")
    assert same_weights(latest, g) and meta["epoch"] == 3
    best, meta = loading.load_generator(tmp_path, "rt", "apple", "best")
    assert same_weights(best, b) and meta["metrics"] == {"fid": 1.0}
    assert torch.load(folder.network_path("discriminator", "apple"), weights_only=True)["kind"] == "discriminator"
    # Progress grids.
    folder.write_progress_grid(Image.new("L", (4, 4), 200), "apple", 10)
    folder.write_progress_grid(Image.new("L", (4, 4), 100), "apple", 1)
    assert folder.progress_grids() == {"apple": [1, 10]} and folder.progress_grid_epochs() == [1, 10]
    assert Image.open(folder.progress_grid_path("apple", 10)).getpixel((0, 0)) == 200
    # A model folder elsewhere (a report's copy) is named by its config file.
    assert model_folder.ModelFolder.at(folder.path).name == "rt"
    with pytest.raises(UserError, match="not a model folder"):
        model_folder.ModelFolder.at(tmp_path)


def _snapshot(epoch: int, fruits=("apple",), ema=True) -> dict:
    """A full checkpoint as TrainingCheckpoints.snapshot builds it (weights of the epoch's own seeds)."""
    states = {f: {"generator": seeded_generator(epoch).state_dict(), "discriminator": Discriminator(TINY_CFG).state_dict(),
                  "ema": seeded_generator(100 + epoch).state_dict() if ema else None, "optimizers": {}}
              for f in fruits}
    return {"format": checkpoint_files.CHECKPOINT_FORMAT, "epoch": epoch, "gan_config": TINY_CFG.to_dict(),
            "fruits": states, "rng": {}, "history": {}, "weights": torch.full((2,), float(epoch))}


def test_checkpoints_round_trip_latest_in_full_and_kept_epochs_for_drawing(tmp_path):
    folder = model_folder.ModelFolder.in_workdir(tmp_path, "ck")
    files = checkpoint_files.CheckpointFiles(folder, background=False)
    with pytest.raises(UserError, match=r"no checkpoint to resume from \(latest.pt missing\)"):
        files.read_resume()
    for epoch in (1, 2):
        files.save(_snapshot(epoch), keep=epoch == 2)
    latest = files.read_resume()
    assert latest["epoch"] == 2 and torch.equal(latest["weights"], torch.full((2,), 2.0))
    assert set(latest["fruits"]["apple"]) == {"generator", "discriminator", "ema", "optimizers"}
    kept, _ = files.kept_holding(2, "apple")
    assert folder.saved_epochs() == [2] and kept["epoch"] == 2                 # epoch 1 was not kept
    assert set(kept["fruits"]["apple"]) == {"ema"} and "rng" not in kept and "weights" not in kept
    folder.checkpoint_path("latest").write_bytes(b"half a file")
    with pytest.raises(UserError, match=r"cannot read checkpoint .*latest.pt.*cannot be resumed.*--overwrite"):
        files.read_resume()
    # Under torchrun each rank reads and writes only its own files.
    rank1 = checkpoint_files.CheckpointFiles(model_folder.ModelFolder.in_workdir(tmp_path, "ck", rank=1, world=2))
    rank1.save(_snapshot(5, ("pear",), ema=False), keep=True)
    rank1.wait()
    assert rank1.read_resume()["epoch"] == 5 and rank1.folder.checkpoint_path("latest").name == "latest_rank1of2.pt"
    assert folder.saved_epochs() == [2, 5]
    assert set(rank1.kept_holding(5, "pear")[0]["fruits"]["pear"]) == {"generator"}   # no moving average kept


def test_a_kept_epoch_draws_what_its_full_checkpoint_drew(tmp_path):
    """Slimming keeps the weights that draw: the same images as the full checkpoint of that epoch."""
    build_model(tmp_path, "v1", fruits=("apple",), kept_epochs=())
    folder = model_folder.ModelFolder.in_workdir(tmp_path, "v1")
    full = _snapshot(3)
    files = checkpoint_files.CheckpointFiles(folder, background=False)
    files.save(full, keep=True)
    noise = torch.randn(8, TINY_CFG.noise_dim, generator=torch.Generator().manual_seed(1))
    drawn, meta = loading.load_generator(tmp_path, "v1", "apple", 3)
    assert meta["used_ema"] and meta["epoch"] == 3
    assert torch.equal(generate(drawn, noise), generate(seeded_generator(103), noise))
    assert folder.checkpoint_path(3).stat().st_size < 0.5 * folder.checkpoint_path("latest").stat().st_size
    with pytest.raises(UserError, match="keeps only the moving-average apple generator; its raw weights are in "
                                        "--checkpoint latest"):
        loading.load_generator(tmp_path, "v1", "apple", 3, use_ema=False)
    raw, meta = loading.load_generator(tmp_path, "v1", "apple", "latest", use_ema=False)
    assert not meta["used_ema"] and same_weights(raw, seeded_generator(3))


# ------------------------------------------------------------------------------------ weights-only refusal
def test_weights_only_refusal_is_one_whole_sentence(tmp_path):
    build_model(tmp_path, "v1")
    path = tmp_path / "models" / "model_v1" / "best" / "generator_apple.pt"
    torch.save({"format": "fruitgan/1", "obj": Fraction(1, 3)}, path)
    with pytest.raises(UserError) as exc:
        loading.load_generator(tmp_path, "v1", "apple", "best")
    assert str(exc.value) == (f"cannot read {path}: it is not a weights-only checkpoint (it would need to run code "
                              "to load); it was not loaded: retrain or use another --checkpoint")


# ------------------------------------------------------------------------------------ --checkpoint latest
def write_latest(workdir, name, fruits, epoch, world=1, ema=True, cfg=TINY_CFG):
    """checkpoints/latest.pt (or one latest_rank<r>of<w>.pt per rank) as the trainer writes it, with weights
    of its own seeds; returns {(fruit, "raw"|"ema"): Generator}."""
    folder = workdir / "models" / f"model_{name}" / "checkpoints"
    written = {}
    for rank in range(world):
        states = {}
        for i, fruit in enumerate(fruits):
            if i % world != rank:
                continue
            raw, avg = seeded_generator(5000 + i, cfg), seeded_generator(6000 + i, cfg)
            written[(fruit, "raw")], written[(fruit, "ema")] = raw, avg
            states[fruit] = {"generator": raw.state_dict(), "discriminator": Discriminator(cfg).state_dict(),
                             "ema": avg.state_dict() if ema else None}
        file = "latest.pt" if world == 1 else f"latest_rank{rank}of{world}.pt"
        atomic_torch_save({"format": "fruitgan-checkpoint/1", "epoch": epoch, "gan_config": cfg.to_dict(),
                           "fruits": states, "rng": {}, "history": {}}, folder / file)
    return written


@pytest.mark.parametrize("world", [1, 2])
def test_latest_is_the_last_finished_epoch_and_milestone_the_generator_file(tmp_path, world):
    written = build_model(tmp_path, "v1", fruits=("apple", "banana", "pear"), epochs_done=4)
    latest = write_latest(tmp_path, "v1", ("apple", "banana", "pear"), epoch=7, world=world)
    for fruit in ("apple", "banana", "pear"):
        g, meta = loading.load_generator(tmp_path, "v1", fruit, "latest")
        assert meta["epoch"] == 7 and meta["used_ema"] and same_weights(g, latest[(fruit, "ema")])
        raw, meta = loading.load_generator(tmp_path, "v1", fruit, "latest", use_ema=False)
        assert not meta["used_ema"] and same_weights(raw, latest[(fruit, "raw")])
        m, meta = loading.load_generator(tmp_path, "v1", fruit, "milestone")
        assert meta["epoch"] == 4 and same_weights(m, written[(fruit, "latest")]) and not same_weights(m, g)
    assert model_folder.ModelFolder.in_workdir(tmp_path, "v1").checkpoint_options("apple") == "latest, milestone, best, 2, 4"


def test_latest_without_a_latest_checkpoint_is_the_generator_file(tmp_path):
    written = build_model(tmp_path, "v1")
    g, meta = loading.load_generator(tmp_path, "v1", "apple", "latest")
    assert meta["epoch"] == 4 and same_weights(g, written[("apple", "latest")])


def test_a_trained_models_latest_is_its_checkpoint_and_the_index_follows_the_run(tiny_workdir):
    from conftest import TINY_VERSION, run_script

    r = run_script("train_gan.py", "--workdir", str(tiny_workdir), "--yes", "--dataset-version", TINY_VERSION,
                   "--model-name", "t", "--epochs", "2", "--batch-size", "8", "--milestones", "1",
                   "--no-eval", "--device", "cpu", "--fruits", "apple")
    assert r.returncode == 0, r.stderr
    ckpt = torch.load(tiny_workdir / "models" / "model_t" / "checkpoints" / "latest.pt", weights_only=True)
    g, meta = loading.load_generator(tiny_workdir, "t", "apple", "latest")
    state = ckpt["fruits"]["apple"]["ema"] or ckpt["fruits"]["apple"]["generator"]
    assert meta["epoch"] == 2 and all(torch.equal(g.state_dict()[k], v) for k, v in state.items())
    entry = models_index.read_index(tiny_workdir, rebuild_if_stale=False)["models"]["t"]   # as the trainer wrote it
    assert entry["epochs_done"] == 2 and entry["status"] == "complete" and entry["fruits"] == ["apple"]
    assert entry["dataset_version"] == TINY_VERSION and entry["resolution"] == 28 and entry["epochs_planned"] == 2


# ------------------------------------------------------------------------------------ models_index.json
def test_index_lists_every_model_with_its_best_figures(tmp_path):
    build_model(tmp_path, "v1", fruits=("apple", "banana"))
    build_model(tmp_path, "b2", fruits=("pear",), dataset_version="7", summary=False, best=False, kept_epochs=())
    summary = tmp_path / "models" / "model_v1" / "info" / "training_summary_v1.json"
    doc = __import__("json").loads(summary.read_text())
    doc["per_fruit"]["apple"]["best_quality"].update(val_two_sample_accuracy=0.58, val_memorisation_ratio=1.1)
    doc["per_fruit"]["apple"]["test_quality"] = {"epoch": 2, "part": "test", "two_sample_accuracy": 0.61,
                                                 "two_sample_low": 0.56, "two_sample_high": 0.66,
                                                 "memorisation_ratio": 1.02}
    summary.write_text(__import__("json").dumps(doc))
    assert not models_index.index_path(tmp_path).exists()
    index = models_index.read_index(tmp_path)                   # missing: built and written
    on_disk = models_index.read_index(tmp_path, rebuild_if_stale=False)
    assert on_disk["models"] == index["models"] and list(index["models"]) == ["b2", "v1"]
    v1 = index["models"]["v1"]
    assert (v1["dataset_version"], v1["resolution"], v1["fruits"]) == ("1", 28, ["apple", "banana"])
    assert (v1["epochs_done"], v1["epochs_planned"], v1["status"]) == (4, 10, "interrupted")
    assert v1["updated"] == "2025-01-02T03:04:05+00:00"
    assert v1["best"]["apple"] == {"epoch": 2, "recognizability": 0.5, "fid": 3.0, "coverage": 0.4,   # the test part's
                                   "two_sample_accuracy": 0.61, "two_sample_low": 0.56, "two_sample_high": 0.66,
                                   "memorisation_ratio": 1.02}
    assert index["models"]["b2"]["best"] == {} and index["models"]["b2"]["status"] == "unknown"


def test_index_is_rebuilt_when_stale_missing_or_unreadable(tmp_path):
    import json
    import os

    build_model(tmp_path, "v1")
    models_index.read_index(tmp_path)
    path = models_index.index_path(tmp_path)
    # A model folder changed after its entry: re-described.
    summary = tmp_path / "models" / "model_v1" / "info" / "training_summary_v1.json"
    doc = json.loads(summary.read_text())
    doc.update(epochs_done=9, status="complete")
    summary.write_text(json.dumps(doc))
    st = summary.stat()
    os.utime(summary, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))     # a clock that moved on for sure
    assert models_index.read_index(tmp_path, rebuild_if_stale=False)["models"]["v1"]["epochs_done"] == 4
    assert models_index.read_index(tmp_path)["models"]["v1"]["epochs_done"] == 9
    assert models_index.read_index(tmp_path, rebuild_if_stale=False)["models"]["v1"]["status"] == "complete"
    # A model missing from it is added; an entry whose folder is gone is dropped.
    build_model(tmp_path, "v2", fruits=("pear",))
    assert list(models_index.read_index(tmp_path)["models"]) == ["v1", "v2"]
    __import__("shutil").rmtree(tmp_path / "models" / "model_v1")
    assert list(models_index.read_index(tmp_path)["models"]) == ["v2"]
    # Unreadable or foreign: rebuilt.
    for junk in ("{half", "[1, 2]", '{"format": "other", "models": {}}', ""):
        path.write_text(junk)
        assert list(models_index.read_index(tmp_path)["models"]) == ["v2"]
        assert list(models_index.read_index(tmp_path, rebuild_if_stale=False)["models"]) == ["v2"]


def test_update_index_redescribes_one_model_and_adds_missing_ones(tmp_path):
    build_model(tmp_path, "v1")
    assert models_index.update_index(tmp_path, "v1") is True
    build_model(tmp_path, "v2", fruits=("pear",))
    assert models_index.update_index(tmp_path, "v2") is True
    assert list(models_index.read_index(tmp_path, rebuild_if_stale=False)["models"]) == ["v1", "v2"]
    assert models_index.update_index(tmp_path / "nowhere", "v1") is False          # no models/: nothing written


def test_a_read_only_models_folder_still_lists(tmp_path, monkeypatch):
    import errno
    from fruitgan.util import safe_files
    build_model(tmp_path, "v1")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(safe_files.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(models_index.os, "open", read_only)
    assert list(models_index.read_index(tmp_path)["models"]) == ["v1"]
    assert models_index.update_index(tmp_path, "v1") is False
    assert not models_index.index_path(tmp_path).exists()


UPDATER = """
import json, sys
sys.path.insert(0, {root!r})
from fruitgan.models import folder as model_folder, index as models_index
workdir, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
summary = model_folder.ModelFolder.in_workdir(workdir, name).summary_path()
for k in range(1, rounds + 1):
    doc = json.loads(summary.read_text())
    doc["epochs_done"] = k
    model_folder.ModelFolder.in_workdir(workdir, name).write_summary(doc)
    assert models_index.update_index(workdir, name)
"""


def test_concurrent_updates_lose_no_entry(tmp_path):
    """Several runs updating the index at once (each its own model, many times): every last update is kept."""
    import subprocess
    import sys

    from conftest import ROOT

    names, rounds = ("a1", "a2", "a3", "a4"), 40
    for name in names:
        build_model(tmp_path, name, fruits=("apple",), kept_epochs=(), best=False)
    models_index.read_index(tmp_path)
    script = UPDATER.format(root=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), n, str(rounds)]) for n in names]
    assert [p.wait(timeout=300) for p in procs] == [0] * len(names)
    index = models_index.read_index(tmp_path, rebuild_if_stale=False)          # the file as the writers left it
    assert {n: index["models"][n]["epochs_done"] for n in names} == {n: rounds for n in names}


def test_odd_entries_do_not_break_the_listing(tmp_path):
    import json

    build_model(tmp_path, "v1")
    root = tmp_path / "models"
    (root / "model_x").write_text("a file, not a folder")
    (root / "model_bad name").mkdir()
    (root / "model_y" / "info").mkdir(parents=True)
    (root / "model_y" / "info" / "training_summary_y.json").write_text("\x00\xff not json")
    build_model(tmp_path, "z", fruits=("pear",))
    summary = root / "model_z" / "info" / "training_summary_z.json"
    summary.write_text(json.dumps({"created": 5, "epochs_done": "many", "status": ["x"], "fruits": "pear",
                                   "per_fruit": {"pear": {"quality": "high", "best_quality": [1]},
                                                 "../up": {"quality": {}}}}))
    (root / "model_w").mkdir()
    (root / "model_w" / "info").write_text("info is a file here")
    models_index.index_path(tmp_path).write_text("{not json")
    index = models_index.read_index(tmp_path)
    assert list(index["models"]) == ["v1", "w", "y", "z"]
    assert index["skipped"] == [{"entry": "model_bad name", "why": "not a valid model name (letters, digits, _ and - only)"},
                                {"entry": "model_x", "why": "a file, not a model folder"}]
    y = index["models"]["y"]
    assert y["status"] == "unknown" and "info/training_summary_y.json is unreadable" in y["problems"]
    assert "info/training_config_y.json is missing" in y["problems"]
    z = index["models"]["z"]
    assert z["created"] is None and z["epochs_done"] is None and z["status"] is None
    assert z["quality"] == {"pear": {"latest": None, "best": None, "best_epoch": None, "test": None, "reference": None}}
    assert index["models"]["v1"]["status"] == "interrupted"


def test_read_generator_gives_the_moving_average_when_kept_and_says_when_missing(tmp_path):
    written = build_model(tmp_path, "r", fruits=("apple",), ema=True, summary=False)
    folder = model_folder.ModelFolder.in_workdir(tmp_path, "r")
    noise = torch.randn(4, TINY_CFG.noise_dim, generator=torch.Generator().manual_seed(0))
    for use_ema, key in ((True, "ema"), (False, "latest")):
        net, used = loading.read_generator(folder, "apple", use_ema=use_ema)
        assert used is use_ema and not net.training
        assert torch.equal(generate(net, noise), generate(written[("apple", key)], noise))
    best, used = loading.read_generator(folder, "apple", best=True)
    assert not used and torch.equal(generate(best, noise), generate(written[("apple", "best")], noise))
    with pytest.raises(UserError, match="no banana generator"):
        loading.read_generator(folder, "banana")


def test_reported_figures_take_the_held_out_tests_from_the_test_part_only():
    best = {"epoch": 300, "recognizability": 0.9, "fid": 2.0, "val_two_sample_accuracy": 0.55,
            "val_memorisation_ratio": 1.1}
    test = {"epoch": 300, "part": "test", "two_sample_accuracy": 0.68, "two_sample_low": 0.63, "two_sample_high": 0.72,
            "memorisation_ratio": 1.02}
    shown = reported.reported_figures({"best": best, "test": test, "latest": None})
    assert shown["two_sample_accuracy"] == 0.68 and shown["two_sample_low"] == 0.63 and shown["recognizability"] == 0.9
    assert not any(k.startswith("val_") for k in shown)          # the part that chose the checkpoint is not shown
    no_split = {"best": {"recognizability": 0.8, "val_two_sample_accuracy": None,
                         "val_two_sample_note": "not enough real drawings"}, "test": None}
    shown = reported.reported_figures(no_split)
    assert "two_sample_accuracy" not in shown and shown["two_sample_note"] == "not enough real drawings"


def test_an_old_runs_held_out_figure_is_not_reported_as_a_test_part_figure():
    old = {"best": {"epoch": 400, "recognizability": 0.9, "two_sample_accuracy": 0.55, "memorisation_ratio": 1.05},
           "test": None}
    shown = reported.reported_figures(old)
    assert "two_sample_accuracy" not in shown and "memorisation_ratio" not in shown and shown["recognizability"] == 0.9
    assert shown["two_sample_note"] == reported.OLD_RUN_NOTE
