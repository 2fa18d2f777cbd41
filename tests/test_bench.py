"""The bench scripts' core functions run on a tiny model and return sensible numbers (no timing
assertions), and the spikingjelly swap they compare against computes what our neurons compute."""
import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import _common  # noqa: E402
import bench_maxpool  # noqa: E402
import bench_models  # noqa: E402
import bench_revisions  # noqa: E402
import bench_scaling  # noqa: E402
import kernels  # noqa: E402
import maxformer  # noqa: E402
import zoo  # noqa: E402
import neurons  # noqa: E402

TINY = "max_former_tiny"
spikingjelly = pytest.importorskip("spikingjelly.activation_based.neuron", reason="spikingjelly not installed")


def test_swap_in_spikingjelly_replaces_every_neuron_and_keeps_the_function():
    """Every Neuron becomes a multi-step LIFNode with the same threshold; logits and gradients stay
    equal (same dynamics: tau 2, hard reset, detached reset, sigmoid surrogate alpha 4)."""
    from spikingjelly.activation_based.functional import reset_net
    torch.manual_seed(0)
    mixers = ("dwc3", "max", "ssa")  # SSA has a neuron with threshold 0.5
    ours = zoo.create_model(TINY, mixers=mixers)
    theirs = _common.swap_in_spikingjelly(zoo.create_model(TINY, mixers=mixers))
    theirs.load_state_dict(ours.state_dict())
    thresholds = [m.dynamics.v_threshold for m in ours.modules() if isinstance(m, neurons.Neuron)]
    nodes = [m for m in theirs.modules() if isinstance(m, spikingjelly.LIFNode)]
    assert not any(isinstance(m, (neurons.Neuron, kernels.MaxPool)) for m in theirs.modules())
    products = [m.binary for m in theirs.modules() if isinstance(m, maxformer.SpikeProduct)]
    assert products == [0, 0]  # no spikes kept as bytes in the authors' set-up
    assert [n.v_threshold for n in nodes] == thresholds and 0.5 in thresholds
    assert all(n.step_mode == "m" and n.detach_reset and n.tau == 2.0 for n in nodes)
    x = torch.rand(2, 4, 2, 24, 24) * 3
    for _ in range(2):  # the second call checks that reset_net clears the membranes
        a, b = ours(x), theirs(x)
        reset_net(theirs)
        torch.testing.assert_close(a, b)
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize("sj", [False, True])
def test_workload_jobs_run_and_train(sj):
    work = _common.Workload(_common.Config(TINY, batch=2, spikingjelly=sj))
    before = [p.detach().clone() for p in work.model.parameters()]
    work.train_step()
    assert any(not torch.equal(a, p) for a, p in zip(before, work.model.parameters()))
    work.infer()
    work.infer_fused()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in work.fused.modules())


def test_median_seconds_interleaves_and_counts_only_timed_rounds():
    calls = []
    jobs = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    out = _common.median_seconds(jobs, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4 and set(out) == {"a", "b"} and all(t >= 0 for t in out.values())


def test_peak_memory_in_a_child_process_is_positive_and_training_needs_more():
    mem = _common.peak_memory(_common.Config(TINY, batch=2, threads=1))
    assert set(mem) == {"infer", "train"}
    assert 0 < mem["infer"] < mem["train"] < 2 ** 30


def test_bench_models_table_has_both_variants_and_ratios():
    args = argparse.Namespace(
        device="cpu", amp=False, neuron_backend="auto", threads=1, repeats=1, warmup=0, no_memory=True)
    res = bench_models.measure_model(TINY, 2, args)
    assert set(res) == {"ours", "spikingjelly"}
    assert all(res[v][job] > 0 for v in res for job in ("train", "infer", "fused", "saved"))
    assert res["ours"]["saved"] < 0.7 * res["spikingjelly"]["saved"]
    text = bench_models.report({(TINY, 2): res}, memory=False)
    assert text.count(TINY) == 3 and "ours/sj" in text


def test_bench_scaling_sweep_and_fit():
    a, b, r2 = bench_scaling.fit_line([1, 2, 4], [3.0, 5.0, 9.0])
    assert (a, b, r2) == pytest.approx((1.0, 2.0, 1.0))
    args = argparse.Namespace(repeats=1, warmup=0, no_memory=True)
    res = bench_scaling.sweep(_common.Config(TINY, batch=2), "T", [1, 2], args)
    assert all(res[t]["time"] > 0 for t in (1, 2))
    assert "time  =" in bench_scaling.report("T", res, memory=False)


@pytest.mark.slow
def test_bench_revisions_alternates_fresh_processes_that_compute_the_same():
    """Compared with itself, the code gives the same loss in every process, and each process times its steps."""
    results = bench_revisions.compare(bench_revisions.ROOT, "again", TINY, batch=2, rounds=2, steps=1)
    runs = results["this tree"] + results["again"]
    assert len(runs) == 4 and len({r["loss"] for r in runs}) == 1
    assert all(len(r["seconds"]) == 1 and r["seconds"][0] > 0 for r in runs)


def test_bench_maxpool_finds_every_pool_and_times_both():
    """max_former_tiny pools in its two embeddings (stride 2); each shape is checked equal, then timed."""
    shapes = bench_maxpool.pool_shapes(TINY, 2)
    assert len(shapes) == sum(isinstance(m, kernels.MaxPool) for m in zoo.create_model(TINY).modules()) > 0
    assert all(len(shape) == 4 and shape[0] == 2 * zoo.create_model(TINY).cfg.T and stride == 2
               for shape, stride in shapes)
    ms = bench_maxpool.measure(shapes[0][0], 2, repeats=1)
    assert set(ms) == {"ours forward", "NCHW forward", "ours fwd+bwd", "NCHW fwd+bwd"} and min(ms.values()) > 0


@pytest.mark.parametrize("script, flag", [(bench_models, "--repeats"), (bench_scaling, "--repeats"),
                                          (bench_revisions, "--against"), (bench_maxpool, "--models")])
def test_help(script, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        script.main(["--help"])
    assert exit_.value.code == 0 and flag in capsys.readouterr().out
