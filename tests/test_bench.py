"""The bench scripts' core functions run on a tiny model and return sensible numbers (no timing
assertions), and the spikingjelly swap they compare against computes what our neurons compute."""
import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import _common  # noqa: E402
import authors  # noqa: E402
import bench_maxpool  # noqa: E402
import bench_models  # noqa: E402
import bench_revisions  # noqa: E402
import bench_scaling  # noqa: E402
import kernels  # noqa: E402
import profile_step  # noqa: E402
import saved_account  # noqa: E402
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


@pytest.mark.parametrize("threshold", [1.0, 0.5])
def test_torch_loop_lif_computes_spikingjellys_lif_and_keeps_three_tensors_per_element(threshold):
    """The transcribed 0.0.0.0.12 neuron gives spikingjelly 2.0's LIFNode spikes and input gradients
    (same dynamics), and keeps what the original keeps: H - threshold and 1 - S per step, the membrane
    sequence and the last membrane, i.e. 3 + 1/T input-sized float tensors; reset frees the state."""
    torch.manual_seed(0)
    x = (torch.randn(4, 3, 50) * 2).requires_grad_()
    g = torch.randn_like(x)
    node = spikingjelly.LIFNode(tau=2.0, v_threshold=threshold, detach_reset=True, step_mode="m")
    ours = authors.TorchLoopLIF(threshold)
    a, b = node(x), ours(x)
    assert torch.equal(a, b) and 0.05 < b.mean() < 0.95
    torch.testing.assert_close(torch.autograd.grad(a, x, g)[0], torch.autograd.grad(b, x, g)[0])
    assert ours.v_seq.shape == x.shape
    ours.reset()
    assert ours.v_seq is None and ours.v == 0.0
    kept = kernels.saved_bytes(lambda: ours(x * 1.0))  # ours holds its state, as a model's neuron does
    assert kept == (3 + 1 / 4) * x.numel() * 4


def test_authors_net_computes_our_model_in_training_and_reset_frees_its_state():
    """Same weights, same input: the authors' transcription gives our logits, our gradients (conv
    biases before a BN aside, whose true gradient is 0 and which both get as rounding noise) and the
    same BN running buffers; after a forward its neurons hold their state until reset()."""
    torch.manual_seed(0)
    ours = zoo.create_model(TINY)
    theirs = authors.AuthorsNet(TINY, ours)
    x = torch.rand(2, 4, 2, 24, 24) * 3
    a, b = ours(x), theirs(x)
    torch.testing.assert_close(a, b)
    assert theirs.neurons and all(n.v_seq is not None for n in theirs.neurons)
    a.square().sum().backward()
    b.square().sum().backward()
    theirs.reset()
    assert not theirs.neurons
    grads = dict(theirs.named_parameters())
    scale = max(p.grad.abs().max() for p in ours.parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name.replace(".", "__")].grad, atol=1e-6 * scale, rtol=1e-4, msg=name)
    buffers = dict(theirs.named_buffers())
    for name, t in ours.named_buffers():
        torch.testing.assert_close(t, buffers[name.replace(".", "__")], msg=name)


def test_authors_net_rejects_weights_that_do_not_fit_the_authors_layout():
    with pytest.raises(ValueError, match="tensors in our model"):
        authors.AuthorsNet("max_former_cifar10", zoo.create_model(TINY))


@pytest.mark.parametrize("variant", ["ours", "spikingjelly", "authors"])
def test_workload_jobs_run_and_train(variant):
    config = _common.Config(TINY, batch=2, spikingjelly=variant == "spikingjelly", authors=variant == "authors")
    work = _common.Workload(config)
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
    whole = _common.process_peak(_common.Config(TINY, batch=2, threads=1), steps=1)
    assert mem["train"] + 2 ** 27 < whole < 2 ** 32  # the libraries' pages (over 128 MiB) count there


def test_bench_models_table_has_every_variant_and_ratios():
    args = argparse.Namespace(device="cpu", amp=False, neuron_backend="auto", threads=1, repeats=1, warmup=0,
                              no_memory=True, process_peak=0, T=None, baselines=["authors", "spikingjelly"])
    res = bench_models.measure_model(TINY, 2, args)
    assert set(res) == {"ours", "authors", "spikingjelly"}
    assert all(res[v][job] > 0 for v in res for job in ("train", "infer", "fused", "saved"))
    assert res["ours"]["saved"] < 0.7 * res["spikingjelly"]["saved"] < 0.7 * res["authors"]["saved"]
    text = bench_models.report({(TINY, 2): res}, memory=False)
    assert text.count(TINY) == 5 and "ours/authors" in text and "ours/spikingjelly" in text


def test_saved_account_adds_up_to_saved_bytes_per_component_and_kind():
    """The account of a training forward sums to kernels.saved_bytes, on both sides; the authors'
    side has the neuron's three per-element tensors in equal amounts, ours none of them."""
    accounts = {}
    for variant in ("ours", "authors"):
        work = _common.Workload(_common.Config(TINY, batch=2, authors=variant == "authors"))
        accounts[variant] = saved_account.account(work)
        assert sum(accounts[variant].values()) == pytest.approx(work.saved_bytes(), rel=1e-3)
    kinds = {v: saved_account.by_kind(acc) for v, acc in accounts.items()}
    neuron = [saved_account.KINDS[(op, how, "float32")] for op, how in (("sub", "saved"), ("rsub", "saved"), ("cat", "kept"))]
    assert len({kinds["authors"][k] for k in neuron}) == 1 and kinds["authors"][neuron[0]] > 0
    assert not any(k in kinds["ours"] for k in neuron)
    components = saved_account.by_component(accounts["ours"])
    assert {"patch_embed1", "stage1.0.mixer", "stage1.0.mlp", "head"} <= set(components)
    assert set(saved_account.by_component(accounts["authors"])) >= set(components) - {"(model)"}
    text = saved_account.report(accounts, top=3)
    assert "stage1.0.mlp" in text and text.count("largest entries") == 2


def test_profile_step_groups_every_operation_and_reports_both_variants():
    assert profile_step.group_of("aten::convolution_backward") == "convolution (forward and backward)"
    assert profile_step.group_of("aten::native_batch_norm") == "batch norm"
    assert profile_step.group_of("aten::sigmoid") == profile_step.OTHER
    works = {v: _common.Workload(_common.Config(TINY, batch=2, authors=v == "authors")) for v in ("ours", "authors")}
    times = profile_step.profile_steps(works, steps=1)
    assert set(times) == {"ours", "authors"} and all(t["convolution (forward and backward)"] > 0 for t in times.values())
    text = profile_step.report(times)
    assert "authors / ours (profiled step time)" in text and text.count("convolution") == 1


def test_component_names():
    assert [saved_account.component(n) for n in ("patch_embed1.lif1", "stage2.0.attn.q_lif", "head_lif",
                                                  "layer2.0.conv1", "bn1")] == [
        "patch_embed1", "stage2.0.attn", "head", "layer2.0", "stem"]


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


@pytest.mark.parametrize("script, flag", [(bench_models, "--baselines"), (bench_scaling, "--repeats"),
                                          (bench_revisions, "--against"), (bench_maxpool, "--models"),
                                          (saved_account, "--top"), (profile_step, "--steps")])
def test_help(script, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        script.main(["--help"])
    assert exit_.value.code == 0 and flag in capsys.readouterr().out
