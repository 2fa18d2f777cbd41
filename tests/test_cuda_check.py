"""bench/cuda_check.py on CPU: its dry run builds every case, respects the budget and rejects bad input."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import cuda_check  # noqa: E402
import zoo  # noqa: E402

CASE_KEYS = {"name", "group", "status", "estimate_s", "seconds", "note", "details"}
FAMILIES = ("max_former_cifar10", "max_former_dvsgesture", "max_former_10_384", "ms_qkformer_cifar10",
            "max_resnet18_cifar10")
WORKLOADS = ("max_former_10_768-T1-b32", "max_former_10_768-T4-b32", "max_former_cifar10-b128",
             "max_former_dvsgesture-b16")


def dry_run(tmp_path: Path, *flags: str) -> dict:
    assert cuda_check.main(["--dry-run", "--out", str(tmp_path), *flags]) == 0
    return json.loads((tmp_path / "cuda_check.json").read_text())


@pytest.mark.slow
def test_dry_run_plans_every_case(tmp_path):
    report = dry_run(tmp_path)
    assert report["schema"] == "maxformer-cuda-check/1" and report["mode"] == "dry-run"
    assert report["exit_code"] == 0 and "zoo.create_model(name, T=..., neuron_backend=...)" in report["imports"]
    cases = {c["name"]: c for c in report["cases"]}
    assert all(set(c) == CASE_KEYS for c in report["cases"])
    assert sum(report["summary"].values()) == len(cases)
    expected = {"environment", "pytest-cuda", "train-resume", "torchrun-train", "torchrun-nccl", "bandwidth"}
    expected |= {f"train-steps:{m}:{p}" for m in FAMILIES for p in ("fp16", "bf16")}
    expected |= {f"triton-exact:{m}" for m in ("max_former_cifar10", "max_former_dvsgesture", "max_former_10_768",
                                                "ms_qkformer_cifar10", "max_resnet18_cifar10")}
    expected |= {f"bench:{w}:{p}:{v}" for w in WORKLOADS for p in ("fp16", "fp32") for v in ("ours", "sj-cupy")}
    assert set(cases) == expected
    assert set(FAMILIES) <= set(zoo.list_models())
    for name, case in cases.items():
        if name.endswith(":sj-cupy") and case["status"] == "skip":
            assert "0.0.0.0.12" in case["note"] and case["details"]["lif_dynamics"], name
        else:
            assert case["status"] == "planned", (name, case["note"])
    assert cases["bench:max_former_10_768-T4-b32:fp32:ours"]["details"]["input"] == [32, 3, 224, 224]
    assert cases["bench:max_former_dvsgesture-b16:fp16:ours"]["details"]["input"] == [16, 16, 2, 128, 128]
    assert cases["train-steps:max_former_cifar10:fp16"]["details"]["grad_scaler"] is True
    assert cases["train-steps:max_former_cifar10:bf16"]["details"]["grad_scaler"] is False
    selected = cases["pytest-cuda"]["details"]["tests"]
    assert "tests/test_neurons.py::test_triton_equals_reference_on_cuda" in selected
    assert "tests/test_train.py::test_cuda_mixed_precision" in selected
    assert not any("interpreter" in t or "test_cuda_check" in t for t in selected)
    assert cases["train-resume"]["details"]["run2"]["epochs"] == 2
    assert "--resume" in cases["train-resume"]["details"]["run2"]["argv"]
    assert "torch.distributed.run --standalone --nproc_per_node 1" in cases["torchrun-nccl"]["details"]["argv"]
    markdown = (tmp_path / "cuda_check.md").read_text()
    assert "## Cases" in markdown and "| bench:max_former_cifar10-b128:fp32:ours | planned |" in markdown


def test_no_budget_skips_every_case_but_the_environment(tmp_path):
    report = dry_run(tmp_path, "--budget-s", "0")
    statuses = {c["name"]: (c["status"], c["note"]) for c in report["cases"]}
    assert statuses.pop("environment")[0] == "planned"
    assert len(statuses) > 30
    assert all(status == "skip" and "--budget-s" in note for status, note in statuses.values())


def test_cases_filter_keeps_the_matching_cases(tmp_path):
    report = dry_run(tmp_path, "--cases", "torchrun-*")
    assert [c["name"] for c in report["cases"]] == ["environment", "torchrun-train", "torchrun-nccl"]


@pytest.mark.parametrize("flags, message", [
    (["--dry-run", "--cases", "nope"], "--cases 'nope' matches no case"),
    (["--dry-run", "--repeats", "0"], "--repeats must be >= 1"),
    (["--budget-s", "-1"], "--budget-s must be positive"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as stop:
        cuda_check.main([*flags, "--out", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and not any("Traceback" in line for line in err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where no GPU is visible")
def test_real_run_without_a_gpu_says_to_dry_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cuda_check.main(["--out", str(tmp_path)])
    assert stop.value.code == 2 and "--dry-run" in capsys.readouterr().err
