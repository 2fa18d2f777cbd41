"""train.py on tiny runs of the offline default (digits-dvs, max_former_tiny), all on CPU.

Runs use a fixed subset (32 train / 16 test samples, batch 8, so 4 steps an epoch). The digits-dvs
events are simulated once per session into a temporary folder.
"""
import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import checkpoints
import settings
import train

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these runs are tiny, and two threads on a busy 2-core machine spin-wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



def tiny(data_dir: Path, out: Path, *flags: str) -> list[str]:
    return ["--data-dir", str(data_dir), "--output", str(out), "--limit-train", "32", "--limit-test", "16",
            "--batch-size", "8", "--epochs", "2", "--device", "cpu", *flags]


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def on_call(monkeypatch, name: str, n: int, before=None, after=None) -> None:
    """On the n-th call of train.<name>, run `before()` first, or pass its result through `after`."""
    original, calls = getattr(train, name), []

    def wrapped(*args, **kwargs):
        calls.append(None)
        if len(calls) == n and before:
            before()
        result = original(*args, **kwargs)
        return after(result) if len(calls) == n and after else result

    monkeypatch.setattr(train, name, wrapped)


def ctrl_c() -> None:
    signal.raise_signal(signal.SIGINT)


@pytest.fixture(scope="module")
def two_epochs(data_dir, tmp_path_factory) -> Path:
    """An uninterrupted two-epoch run: the offline default end to end, and the resume tests' reference."""
    out = tmp_path_factory.mktemp("two_epochs")
    summary = train.main(tiny(data_dir, out))
    top1 = [float(r["test_acc1"]) for r in read_csv(out / "log.csv")]
    assert summary["output"] == str(out)
    assert (summary["best_acc1"], summary["final_acc1"]) == pytest.approx((max(top1), top1[-1]), rel=1e-5)
    return out


def test_offline_default_learns_and_logs(two_epochs):
    rows = read_csv(two_epochs / "log.csv")
    assert tuple(rows[0]) == train.CSV_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    top1 = [float(r["test_acc1"]) for r in rows]
    last = torch.load(two_epochs / "last.pth", weights_only=True)
    assert (last["epoch"], last["step"]) == (2, 0)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "best_acc1"} <= last.keys()
    assert last["best_acc1"] == pytest.approx(max(top1), rel=1e-5)
    best = torch.load(two_epochs / "best.pth", weights_only=True)
    assert best["epoch"] == last["best_epoch"] == 1 + top1.index(max(top1))
    assert not list(two_epochs.glob("*.tmp"))


def test_resume_after_one_epoch_is_exact(two_epochs, data_dir, tmp_path, monkeypatch, capsys):
    # Ctrl-C during epoch 1's evaluation: the epoch completes, is saved, and training stops.
    on_call(monkeypatch, "evaluate", 1, before=ctrl_c)
    with pytest.raises(SystemExit) as stop:
        train.main(tiny(data_dir, tmp_path))
    assert stop.value.code == train.EXIT_INTERRUPTED
    assert "stopped at the end of epoch 1" in capsys.readouterr().out
    assert torch.load(tmp_path / "last.pth", weights_only=True)["epoch"] == 1
    monkeypatch.undo()
    train.main(tiny(data_dir, tmp_path, "--resume", str(tmp_path / "last.pth")))
    assert_same_weights(weights(two_epochs / "last.pth"), weights(tmp_path / "last.pth"))
    assert len(read_csv(tmp_path / "log.csv")) == 2


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(two_epochs, data_dir, tmp_path, monkeypatch, capsys):
    on_call(monkeypatch, "soft_cross_entropy", STEPS_PER_EPOCH + 2, before=ctrl_c)  # epoch 2, step 2
    with pytest.raises(SystemExit) as stop:
        train.main(tiny(data_dir, tmp_path))
    assert stop.value.code == train.EXIT_INTERRUPTED
    assert "stopped at epoch 2, step 2" in capsys.readouterr().out
    ckpt = torch.load(tmp_path / "last.pth", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 2)
    monkeypatch.undo()
    train.main(tiny(data_dir, tmp_path, "--resume", str(tmp_path / "last.pth")))
    assert_same_weights(weights(two_epochs / "last.pth"), weights(tmp_path / "last.pth"))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(two_epochs, data_dir, tmp_path, monkeypatch):
    on_call(monkeypatch, "soft_cross_entropy", STEPS_PER_EPOCH + 3, after=lambda loss: loss * float("nan"))
    with pytest.raises(SystemExit) as stop:
        train.main(tiny(data_dir, tmp_path))
    message = str(stop.value.code)
    assert "epoch 2, step 3" in message and "nan" in message and "last.pth" in message
    assert torch.load(tmp_path / "last.pth", weights_only=True)["epoch"] == 1
    assert len(read_csv(tmp_path / "log.csv")) == 1


def test_eval_only_reproduces_the_logged_accuracy(two_epochs, data_dir, tmp_path, capsys):
    logged = float(read_csv(two_epochs / "log.csv")[-1]["test_acc1"])
    flags = tiny(data_dir, tmp_path, "--eval-only", "--checkpoint", str(two_epochs / "last.pth"))
    assert train.main(flags)["test_acc1"] == pytest.approx(logged, rel=1e-5)
    assert "test top-1" in capsys.readouterr().out
    official = tmp_path / "official.pth"  # the authors' CIFAR/event layout: {"model": state_dict, ...}
    torch.save({"model": weights(two_epochs / "last.pth"), "epoch": 1}, official)
    flags = tiny(data_dir, tmp_path, "--eval-only", "--checkpoint", str(official), "--model", "max_former_tiny")
    assert train.main(flags)["test_acc1"] == pytest.approx(logged, rel=1e-5)


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(two_epochs, data_dir, tmp_path):
    """torchrun, two gloo ranks: rank 0 alone writes; test metrics cover both ranks' shards; the
    learning rate follows the global batch (2 x 4 = 8: 0.128 x 8 / 256 = 0.004)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    flags = tiny(data_dir, tmp_path, "--batch-size", "4", "--epochs", "1", "--lr-base", "0.128")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "train.py"), *flags]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best test top-1 over epochs") == 1
    assert "2 x cpu, peak lr 0.004;" in done.stdout
    rows = read_csv(tmp_path / "log.csv")
    assert len(rows) == 1
    single = train.main(tiny(data_dir, tmp_path / "eval", "--eval-only", "--checkpoint", str(tmp_path / "last.pth")))
    assert single["test_acc1"] == pytest.approx(float(rows[0]["test_acc1"]), rel=1e-5)


def test_mixup_switches_off_and_clipping_runs(data_dir, tmp_path, monkeypatch):
    mixed = []

    class CountingMixup(train.MixupCutmix):
        def __call__(self, x, y):
            mixed.append(len(y))
            return super().__call__(x, y)

    monkeypatch.setattr(train, "MixupCutmix", CountingMixup)
    train.main(tiny(data_dir, tmp_path, "--limit-train", "16", "--mixup", "0.8", "--cutmix", "1.0",
                    "--mixup-off-epoch", "1", "--clip-grad", "1.0"))
    assert mixed == [8, 8]  # the two steps of epoch 1; none in epoch 2
    assert len(read_csv(tmp_path / "log.csv")) == 2


def test_learning_rate_schedule():
    cfg = train.parse_args(["--epochs", "10", "--warmup-epochs", "2", "--cooldown-epochs", "3",
                            "--warmup-lr", "1e-4", "--min-lr", "1e-5", "--lr", "1e-2"])
    lr = [train.lr_at(step, cfg, steps_per_epoch=10) for step in range(100)]
    assert lr[0] == pytest.approx(1e-4) and lr[10] == pytest.approx((1e-4 + 1e-2) / 2)
    assert lr[20] == pytest.approx(1e-2) and max(lr) == lr[20]
    assert lr[45] == pytest.approx((1e-2 + 1e-5) / 2)  # half-way down the cosine (steps 20-70)
    assert all(a >= b for a, b in zip(lr[20:], lr[21:]))
    assert lr[70:] == [1e-5] * 30  # cool-down


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision(data_dir, tmp_path, precision):
    summary = train.main(tiny(data_dir, tmp_path, "--device", "cuda", "--precision", precision))
    assert 0 <= summary["final_acc1"] <= 100
    assert all(t.isfinite().all() for t in weights(tmp_path / "last.pth").values() if t.is_floating_point())
    assert weights(tmp_path / "last.pth")["head.weight"].dtype == torch.float32


def test_unknown_flag_lists_valid_flags(capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(["--bacth-size", "8"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--bacth-size" in err and "valid flags:" in err and "--batch-size" in err and "--mixup-off-epoch" in err


def test_config_file_keys_flags_override_and_unknown_key(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("lr: 1.5e-3\nweight-decay: 6e-2\nbatch_size: 8\nT: 3\ncompile: true\nmixup-off-epoch: 5\n")
    args = train.parse_args(["--config", str(config), "--lr", "0.2"])
    assert (args.lr, args.weight_decay, args.batch_size, args.T, args.compile, args.mixup_off_epoch) == \
        (0.2, 0.06, 8, 3, True, 5)
    config.write_text("lr: 0.1\nwarmup: 5\n")
    with pytest.raises(SystemExit):
        train.parse_args(["--config", str(config)])
    err = capsys.readouterr().err
    assert "unknown key 'warmup'" in err and "warmup-epochs" in err and "batch-size" in err


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_paper_configs_parse(config):
    args = train.parse_args(["--config", str(config)])
    assert args.model in train.list_models()
    assert yaml.safe_load(config.read_text())["model"] == args.model


def test_help_documents_every_flag(capsys):
    parser = train.build_parser()
    for action in parser._actions:
        assert action.help and action.help.strip(), action.option_strings
    with pytest.raises(SystemExit) as stop:
        train.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for flag in settings.valid_flags(parser):
        assert flag in out


@pytest.mark.parametrize("flags, message", [
    (["--eval-only"], "--eval-only needs --checkpoint"),
    (["--checkpoint", "x.pth"], "--checkpoint is read only with --eval-only"),
    (["--eval-only", "--checkpoint", "x.pth", "--resume", "y.pth"], "drop --resume"),
])
def test_checkpoint_flag_combinations_are_checked(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        train.parse_args(flags)
    assert stop.value.code == 2 and message in capsys.readouterr().err
