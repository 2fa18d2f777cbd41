"""Runs that cannot silently go wrong (issue 11): checkpoints carry their model config and settings,
run folders never lose a result, broken models are never kept, bad input gets one message.

Each test below starts from something seen to go wrong; the tiny runs are those of test_train.py.
"""
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import checkpoints
import train
from zoo import create_model, model_config
from test_train import ROOT, on_call, one_thread, read_csv, tiny  # noqa: F401 (one_thread: an autouse fixture)


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def fails(flags: list[str], capsys) -> str:
    """Run train.main, expect exit status 2, and return the one message it printed."""
    with pytest.raises(SystemExit) as stop:
        train.main(flags)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def no_data(monkeypatch) -> None:
    """Fail the test if a run gets as far as building its datasets."""
    def build_data(cfg):
        raise AssertionError("the datasets were built")
    monkeypatch.setattr(train, "build_data", build_data)


@pytest.fixture(scope="module")
def done(data_dir, tmp_path_factory) -> Path:
    """A finished two-epoch run at -T 3 whose best epoch (1) is older than its last (2)."""
    out = tmp_path_factory.mktemp("done")
    patch = pytest.MonkeyPatch()
    on_call(patch, "evaluate", 1, after=lambda metrics: {**metrics, "test_acc1": 100.0})
    train.main(tiny(data_dir, out, "-T", "3"))
    patch.undo()
    return out


# ---------------------------------------------------------------------------------------------
# A checkpoint is the source of truth for what it holds.

def test_checkpoints_record_model_config_and_settings(done):
    ckpt = load(done / "last.pth")
    record = ckpt["model_config"]
    assert (record["name"], record["spec"]) == ("max_former_tiny", None)
    assert {k: record["overrides"][k] for k in ("num_classes", "in_channels", "img_size", "T")} == \
        {"num_classes": 10, "in_channels": 2, "img_size": 24, "T": 3}
    rebuilt = create_model(record["name"], spec=record["spec"], **record["overrides"])
    rebuilt.load_state_dict(ckpt["model"])
    assert rebuilt.T == 3 and model_config(rebuilt) == record
    settings = ckpt["config"]
    assert (settings["batch_size"], settings["limit_train"], settings["epochs"], settings["T"]) == (8, 32, 2, 3)
    assert ckpt["world"] == 1 and len(ckpt["rng"]) == 1
    assert [row["epoch"] for row in ckpt["history"]] == [1, 2]


def test_resume_restores_the_recorded_settings(data_dir, tmp_path, capsys):
    """Seen: --resume after --limit-train 320 --epochs 2 --batch-size 16 trained 1437 samples for 10
    epochs at batch 32. Now only the data folder and --epochs (to extend) need giving."""
    train.main(tiny(data_dir, tmp_path, "--epochs", "1", "--batch-size", "16"))
    capsys.readouterr()
    train.main(["--resume", str(tmp_path / "last.pth"), "--data-dir", str(data_dir), "--epochs", "2"])
    out = capsys.readouterr().out
    assert "--epochs 2 (was 1): the step-cosine schedule is recomputed over 2 epochs" in out
    assert "32 train / 16 test samples" in out
    ckpt = load(tmp_path / "last.pth")
    assert (ckpt["config"]["batch_size"], ckpt["config"]["limit_train"], ckpt["config"]["epochs"]) == (16, 32, 2)
    assert [int(r["epoch"]) for r in read_csv(tmp_path / "log.csv")] == [1, 2]


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "16"], "--batch-size 16 contradicts the recorded 8"),
    (["--spec", "embed=orig,avg,avg"], "--spec embed=orig,avg,avg contradicts the recorded None"),
    (["--lr", "0.1", "--limit-train", "320"], "--limit-train 320 contradicts the recorded 32; --lr 0.1 contradicts "
                                              "the recorded 0.005"),
])
def test_resume_with_a_contradicting_flag_is_an_error(done, flags, message, capsys, monkeypatch):
    no_data(monkeypatch)
    err = fails(["--resume", str(done / "last.pth"), *flags], capsys)
    assert message in err and "--override" in err


def test_override_changes_a_recorded_setting_and_a_finished_run_says_so(done, capsys):
    """Seen: resuming a finished run printed nan%."""
    summary = train.main(["--resume", str(done / "last.pth"), "--batch-size", "16", "--override"])
    out = capsys.readouterr().out
    assert "--override: --batch-size 8 -> 16" in out
    assert "is a finished run: 2 of 2 epochs, best test top-1 100.00% at epoch 1" in out and "nan" not in out
    assert summary["finished"] and summary["best_acc1"] == 100.0


def test_eval_only_builds_the_model_from_the_checkpoint(done, data_dir, tmp_path, capsys):
    """Seen: --eval-only with a --spec or -T that the model was not trained with reported 10.00% and
    23.61% for an 87.5% model, without a word."""
    logged = float(read_csv(done / "log.csv")[-1]["test_acc1"])
    flags = ["--eval-only", "--checkpoint", str(done / "last.pth"), "--data-dir", str(data_dir),
             "--limit-test", "16", "--device", "cpu"]
    assert train.main(flags)["test_acc1"] == pytest.approx(logged, rel=1e-5)
    assert "T 3" in capsys.readouterr().out
    assert "-T 8 contradicts the recorded 3" in fails([*flags, "-T", "8"], capsys)
    assert "--spec embed=orig,avg,avg contradicts the recorded None" in fails([*flags, "--spec", "embed=orig,avg,avg"], capsys)
    official = tmp_path / "official.pth"  # the authors' files carry no config: their model is named
    torch.save({"model": load(done / "last.pth")["model"]}, official)
    assert "name its model with --model" in fails([*flags[:1], "--checkpoint", str(official), *flags[3:]], capsys)


DDP_RNG = """
import random, sys, torch, numpy as np, torch.distributed as dist
import train
from checkpoints import all_rng_states, set_rng_state
ctx = train.setup("cpu")
for seed_fn in (random.seed, np.random.seed, torch.manual_seed):
    seed_fn(100 + ctx.rank)
torch.rand(ctx.rank + 1)
states = all_rng_states()
if ctx.is_main:
    torch.save({"rng": states}, sys.argv[1])
dist.barrier()
draws = [torch.rand(3), np.random.rand(2), random.random()]
torch.manual_seed(12345)
set_rng_state(torch.load(sys.argv[1], weights_only=True)["rng"][ctx.rank])
again = [torch.rand(3), np.random.rand(2), random.random()]
assert torch.equal(draws[0], again[0]) and (draws[1] == again[1]).all() and draws[2] == again[2], ctx.rank
print(f"rank {ctx.rank} restored {draws[0].tolist()}", flush=True)
dist.barrier()
dist.destroy_process_group()
"""


def test_ddp_saves_and_restores_every_ranks_random_state(tmp_path):
    """Seen: only rank 0's random state was saved and loaded into all ranks (a resumed 2-rank run
    with mixup differed by up to 0.68 in its weights)."""
    script = tmp_path / "rng.py"
    script.write_text(DDP_RNG)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path / "rng.pth")]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    states = load(tmp_path / "rng.pth")["rng"]
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])
    restored = dict(re.findall(r"rank (\d) restored (\[[^]]*\])", done.stdout))
    assert restored.keys() == {"0", "1"} and restored["0"] != restored["1"]


# ---------------------------------------------------------------------------------------------
# Run folders never lose a result.

def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_new_run_never_writes_into_another_runs_folder(done, data_dir, tmp_path, capsys):
    """Seen: a new run with --output on an old folder replaced its 88% best.pth with a 6.25% one and
    appended to its log.csv."""
    before = snapshot(done)
    err = fails(tiny(data_dir, done), capsys)
    assert f"{done} holds another run" in err and "--overwrite" in err
    assert snapshot(done) == before
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in before.items():
        (copy / name).write_bytes(data)
    train.main(tiny(data_dir, copy, "--epochs", "1", "--overwrite"))
    assert [int(r["epoch"]) for r in read_csv(copy / "log.csv")] == [1]
    assert load(copy / "best.pth")["epoch"] == 1 and load(copy / "best.pth")["config"]["T"] is None


def test_default_run_folders_never_collide(tmp_path, monkeypatch):
    """Seen: two runs started in the same second shared one folder."""
    monkeypatch.setattr(checkpoints.time, "strftime", lambda fmt: "20260101-000000")
    names = [checkpoints.new_run_folder(tmp_path, checkpoints.default_run_name("d", "m")).name for _ in range(3)]
    assert names == ["d-m-20260101-000000", "d-m-20260101-000000-2", "d-m-20260101-000000-3"]


def test_one_writer_per_folder(data_dir, tmp_path, capsys, monkeypatch):
    """Seen: two writers in one folder produced a corrupt last.pth and a crash in os.replace."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "lock").write_text(f"{sleeper.pid}@{os.uname().nodename}")
        no_data(monkeypatch)
        err = fails(tiny(data_dir, tmp_path), capsys)
        assert f"in use by process {sleeper.pid}" in err
    finally:
        sleeper.kill()
        sleeper.wait()
    with checkpoints.folder_lock(tmp_path):  # the lock's process has exited: stale, taken over
        assert (tmp_path / "lock").read_text().startswith(f"{os.getpid()}@")
        with pytest.raises(checkpoints.RunFolderError, match="in use by process"):
            with checkpoints.folder_lock(tmp_path):
                pass
    assert not (tmp_path / "lock").exists()
    assert "taking over the stale lock" in capsys.readouterr().out
    names = []
    checkpoints.replace_atomically(tmp_path / "f.txt", lambda tmp: (names.append(tmp.name), tmp.write_text("x")))
    assert names == [f"f.txt.{os.getpid()}.tmp"] and (tmp_path / "f.txt").read_text() == "x"


def test_resume_best_never_overwrites_a_newer_last(done, data_dir, tmp_path, capsys):
    before = snapshot(done)
    err = fails(["--resume", str(done / "best.pth"), "--data-dir", str(data_dir)], capsys)
    assert "would overwrite the newer" in err and "last.pth (epoch 2)" in err and "--output" in err
    assert snapshot(done) == before
    train.main(["--resume", str(done / "best.pth"), "--data-dir", str(data_dir), "--output", str(tmp_path)])
    assert [int(r["epoch"]) for r in read_csv(tmp_path / "log.csv")] == [1, 2]
    assert float(read_csv(tmp_path / "log.csv")[0]["test_acc1"]) == 100.0  # the row carried over from best.pth
    assert snapshot(done) == before


class Crash(BaseException):
    """A kill at a chosen point (not an Exception: nothing may catch it)."""


def test_a_crash_between_saves_leaves_a_consistent_folder(data_dir, tmp_path, monkeypatch):
    """Killed after last.pth but before log.csv at the end of epoch 1: resuming rewrites the log from
    the checkpoint, with no row lost or repeated."""
    def crash() -> None:
        raise Crash

    on_call(monkeypatch, "write_log", 2, before=crash)
    with pytest.raises(Crash):
        train.main(tiny(data_dir, tmp_path))
    monkeypatch.undo()
    assert load(tmp_path / "last.pth")["epoch"] == 1 and read_csv(tmp_path / "log.csv") == []
    train.main(["--resume", str(tmp_path / "last.pth"), "--data-dir", str(data_dir)])
    assert [int(r["epoch"]) for r in read_csv(tmp_path / "log.csv")] == [1, 2]


def test_full_disk_and_read_only_folder_are_reported_before_the_data(data_dir, tmp_path, capsys, monkeypatch):
    no_data(monkeypatch)
    read_only = Path("/sys/maxformer-run")  # not writable, even by root
    err = fails(tiny(data_dir, read_only), capsys)
    assert f"cannot write to the run folder {read_only}" in err and "MiB free on" in err
    real = checkpoints.shutil.disk_usage
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: real(p)._replace(free=2 ** 20))
    err = fails(tiny(data_dir, tmp_path / "full"), capsys)
    assert f"not enough space for checkpoints in {tmp_path / 'full'}" in err and "1 MiB free on" in err


def test_a_failed_save_keeps_the_previous_checkpoint(data_dir, tmp_path, capsys, monkeypatch):
    real_save, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 2 and "last.pth" in str(path):  # epoch 1: best, last; epoch 2's last: disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "save", save)
    err = fails(tiny(data_dir, tmp_path), capsys)
    monkeypatch.undo()
    assert f"cannot write {tmp_path / 'last.pth'} (No space left on device)" in err
    assert "MiB free on" in err and "the previous last.pth is intact" in err
    assert load(tmp_path / "last.pth")["epoch"] == 1
    assert not list(tmp_path.glob("*.tmp"))


# ---------------------------------------------------------------------------------------------
# Never keep a broken model.

def all_finite(folder: Path) -> bool:
    return all(torch.isfinite(t).all() for name in ("last.pth", "best.pth") if (folder / name).exists()
               for t in load(folder / name)["model"].values() if t.is_floating_point())


def test_a_nan_in_the_data_stops_the_run(data_dir, tmp_path, monkeypatch):
    """Seen: one NaN pixel in one cached sample ended a run with exit 0 at 9.4% and NaN weights
    saved (spiking thresholds turn NaN into "no spike", so the loss stayed finite)."""
    real = train.build_data

    def poisoned(cfg):
        train_set, test_set, info = real(cfg)

        class Poisoned(torch.utils.data.Dataset):
            def __len__(self):
                return len(train_set)

            def __getitem__(self, i):
                x, y = train_set[i]
                if i == 0:
                    x = x.clone()
                    x[(0,) * x.dim()] = float("nan")
                return x, y

        return Poisoned(), test_set, info

    monkeypatch.setattr(train, "build_data", poisoned)
    with pytest.raises(SystemExit) as stop:
        train.main(tiny(data_dir, tmp_path))
    message = str(stop.value.code)
    assert "not finite" in message and "at epoch 1, step" in message
    assert "no epoch had finished, so there is no checkpoint" in message
    assert not (tmp_path / "last.pth").exists()


def test_a_diverging_run_never_saves_non_finite_weights(data_dir, tmp_path):
    """Seen: --lr 1e6 kept a "last good checkpoint" with 99 of 119 tensors non-finite."""
    with pytest.raises(SystemExit) as stop:
        train.main(tiny(data_dir, tmp_path, "--lr", "1e6", "--warmup-epochs", "0"))
    assert "not finite" in str(stop.value.code) and "step" in str(stop.value.code)
    assert all_finite(tmp_path)


def test_infinite_batchnorm_statistics_stop_the_run(data_dir, tmp_path, monkeypatch):
    """Seen: --lr 1e3 saved infinite BatchNorm running statistics; in training mode BN normalises
    with the batch's statistics, so the loss stayed finite."""
    real, steps = train.build_optimizer, []

    def build_optimizer(net, *args):
        def after_step(optimizer, *_):  # what a huge update does to one layer's statistics, at epoch 2 step 2
            steps.append(None)
            if len(steps) == 6:
                next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_var.fill_(float("inf"))
        optimizer = real(net, *args)
        optimizer.register_step_post_hook(after_step)
        return optimizer

    monkeypatch.setattr(train, "build_optimizer", build_optimizer)
    with pytest.raises(SystemExit) as stop:
        train.main(tiny(data_dir, tmp_path))
    message = str(stop.value.code)
    assert "BatchNorm statistics tensors are not finite" in message and "running_var" in message
    assert "at epoch 2, step 2 (of 4)" in message and "loss" not in message.split(" at epoch")[0]
    assert f"the last good checkpoint {tmp_path / 'last.pth'} (epoch 1) is kept" in message
    assert all_finite(tmp_path)


def test_a_checkpoint_with_non_finite_tensors_is_never_written(tmp_path):
    state = {"model": {"w": torch.tensor([1.0, float("inf")])}}
    with pytest.raises(checkpoints.NonFiniteError, match="1 model tensors are not finite"):
        checkpoints.save_checkpoint(state, tmp_path / "last.pth")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Bad input gets one clear message, never a traceback.

@pytest.mark.parametrize("flags, message", [
    (["--clip-grad", "-1"], "argument --clip-grad: must be a positive number, got -1"),
    (["--clip-grad", "0"], "argument --clip-grad: must be a positive number, got 0"),
    (["--batch-size", "0"], "argument --batch-size: must be a positive integer, got 0"),
    (["-T", "0"], "argument -T: must be a positive integer, got 0"),
    (["--workers", "-1"], "argument --workers: must be a non-negative integer, got -1"),
    (["--lr", "-1"], "argument --lr: must be a positive number, got -1"),
    (["--epochs", "0"], "argument --epochs: must be a positive integer, got 0"),
    (["--limit-test", "0"], "argument --limit-test: must be a positive integer, got 0"),
    (["--neuron-backend", "cuda"], "invalid choice: 'cuda' (choose from 'auto', 'torch', 'fused', 'compiled', 'triton')"),
    (["--model", "max_formr_tiny"], "unknown model 'max_formr_tiny'; did you mean max_former_tiny"),
    (["--spec", "embedd="], "bad spec item 'embedd='"),
    (["--spec", "embed=orig,max"], "cannot build max_former_tiny: dims, depths, embeds and mixers need one entry"),
    (["--spec", "mixer=foo"], "cannot build max_former_tiny"),
    (["--cooldown-epochs", "10"], "--cooldown-epochs 10 leaves no epoch of --epochs 10 to train"),
])
def test_bad_flags_get_one_message(flags, message, tmp_path, capsys, monkeypatch):
    no_data(monkeypatch)
    err = fails(["--output", str(tmp_path / "run"), *flags], capsys)
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_bad_yaml_names_file_and_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("lr: 0.1\nbatch-size: [8\nepochs: 2\n")
    assert f"--config {config}, line 3: not valid YAML" in fails(["--config", str(config)], capsys)


@pytest.mark.parametrize("content, message", [
    (b"", "is corrupt or not a checkpoint"),
    (b"\x80\x02 random bytes" * 10, "is corrupt or not a checkpoint"),
    ("truncated", "is corrupt or not a checkpoint"),
    ("pickled", "holds pickled Python objects besides tensors"),
])
def test_a_broken_checkpoint_says_what_is_wrong(content, message, tmp_path, capsys, monkeypatch):
    """Seen: an empty, truncated or random file was said to "hold pickled Python objects"."""
    path = tmp_path / "x.pth"
    if content == "pickled":
        torch.save({"model": {}, "args": Path("a Python object")}, path)
    elif content == "truncated":
        torch.save({"model": {"w": torch.ones(100)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    no_data(monkeypatch)
    assert message in fails(["--eval-only", "--checkpoint", str(path), "--model", "max_former_tiny"], capsys)


def test_shared_flag_vocabulary_and_help(capsys):
    cfg = train.parse_args(["--out", "somewhere", "-T", "2", "--eval-only", "--checkpoint", "c.pth", "--allow-pickle"])
    assert (cfg.output, cfg.T, cfg.checkpoint, cfg.allow_pickle) == ("somewhere", 2, "c.pth", True)
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    assert "--output DIR, --out DIR" in out and "{auto,torch,fused,compiled,triton}" in out
    for flag in ("--eval-precision", "--deterministic", "--event-cutmix", "--aug-policy", "--random-erasing",
                 "--schedule", "--print-recipe", "--steps-per-epoch", "--override", "--overwrite"):
        assert flag in out


# ---------------------------------------------------------------------------------------------
# A run folder a person can read; the recipe without data.

def test_the_run_folder_can_be_read(done, tmp_path):
    names = {p.name for p in done.iterdir()}
    assert {"config.yaml", "recipe.json", "last.pth", "best.pth", "log.csv", "tensorboard", "curves.png"} <= names
    assert (done / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = train.parse_args(["--config", str(done / "config.yaml")])
    recorded = load(done / "last.pth")["config"]
    assert {k: v for k, v in vars(again).items() if k not in train.ROLES.run_only} == \
        {k: v for k, v in recorded.items() if k not in train.ROLES.run_only}
    recipe = json.loads((done / "recipe.json").read_text())
    assert recipe["lr_per_epoch"] == [train.lr_at(e * 4, again, 4) for e in range(2)]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(done / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train_loss", "test_loss", "test_acc1", "lr"} <= set(tags)
    rates = [t for t in tags if t.startswith("firing_rate/")]
    assert len(rates) >= 3 and all(0 <= events.Scalars(t)[-1].value <= 1 for t in rates)
    assert [e.step for e in events.Scalars("test_acc1")] == [1, 2]


def test_the_header_names_the_run_and_bars_stay_off_a_redirected_log(data_dir, tmp_path, capsys):
    train.main(tiny(data_dir, tmp_path, "--epochs", "1"))
    captured = capsys.readouterr()
    assert "max_former_tiny (spec none, T 4, neuron lif) on digits-dvs: 32 train / 16 test samples, " in captured.out
    assert "float32 on 1 x cpu, peak lr 0.005" in captured.out
    assert "epoch 1/1" not in captured.err and "it/s" not in captured.err  # stderr is not a terminal here


def test_print_recipe_reads_no_data(capsys, monkeypatch):
    no_data(monkeypatch)
    train.main(["--print-recipe", "--steps-per-epoch", "10", "--epochs", "3", "--lr-base", "0.256"])
    recipe = json.loads(capsys.readouterr().out)
    assert recipe["schedule"]["steps_per_epoch"] == 10 and recipe["lr"]["peak"] == pytest.approx(0.256 * 32 / 256)
    assert len(recipe["lr_per_epoch"]) == 3 and recipe["lr_per_epoch"][0] == pytest.approx(1e-6)
    assert "fewer than one batch of 4096" in fails(["--print-recipe", "--batch-size", "4096"], capsys)


def test_eval_precision_and_deterministic(done, data_dir, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    train.main(["--eval-only", "--checkpoint", str(done / "last.pth"), "--data-dir", str(data_dir),
                "--limit-test", "16", "--device", "cpu", "--eval-precision", "fp32", "--deterministic"])
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_an_unusable_data_dir_is_reported_before_any_folder_is_made(tmp_path, capsys, monkeypatch):
    """Seen: --data-dir /nonexistent created folders at the filesystem root and trained for 7 minutes."""
    no_data(monkeypatch)
    err = fails(["--data-dir", str(tmp_path / "no" / "such"), "--output", str(tmp_path / "run")], capsys)
    assert f"--data-dir {tmp_path / 'no' / 'such'} does not exist" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "no").exists()
