"""The planner on profiles and synthetic GGUFs, the hardware specs, and `codeflow plan`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from gguf_factory import write_tiny_gguf

from codeflow.lsp_server import cmd_plan
from codeflow.quant import hardware
from codeflow.quant.errors import PlanError
from codeflow.quant.hardware import GIB, Hardware
from codeflow.quant.planner import candidates_from_path, candidates_from_profile, plan, plan_local
from codeflow.quant.profiles import MIN_GOOD_BPW, PROFILES, QUANTS

IQUEST = "iquest-coder-v1-40b-instruct"
LOOP = "iquest-coder-v1-40b-loop-instruct"
DEEPSEEK = "deepseek-coder-33b-instruct"


def machine(gpu: str, ram: str = "64G") -> Hardware:
    """A described machine, independent of the one running the tests."""
    base = Hardware(ram_total_bytes=GIB, ram_available_bytes=GIB, cpu_cores=8, cpu_threads=16)
    return hardware.given(gpu, ram, base)


def _fits_every_device(p) -> None:
    for dev in p.estimate.per_device:
        if dev.device != "cpu":
            assert dev.total_bytes <= dev.capacity_bytes, dev


def test_published_geometry() -> None:
    iq, ds = PROFILES[IQUEST], PROFILES[DEEPSEEK]
    assert (iq.n_layer, iq.n_embd, iq.n_head, iq.n_head_kv, iq.n_vocab, iq.n_ctx_train) == (80, 5120, 40, 8, 76800, 131072)
    assert iq.rope_scaling is None and PROFILES[LOOP].loop == 2
    assert (ds.n_layer, ds.n_embd, ds.n_head, ds.n_head_kv, ds.n_ff, ds.n_vocab) == (62, 7168, 56, 8, 19200, 32256)
    # "40B" and "33B": the parameter counts the names promise.
    assert 39.5e9 < iq.params() < 40.5e9
    assert 33.0e9 < ds.params() < 33.7e9


def test_40b_fp16_is_about_80_gb() -> None:
    (cand,) = candidates_from_profile(IQUEST, ["F16"])
    weights = sum(cand.geometry.layer_bytes) + cand.geometry.input_bytes + cand.geometry.output_bytes
    assert 78e9 < weights < 81e9


def test_40b_on_one_a100_at_32k_runs_local_on_the_gpu() -> None:
    p = plan(candidates_from_profile(IQUEST), machine("1xA100-80GB"), 32768)
    assert p.backend == "local" and p.profile == IQUEST and p.model_file is None
    assert p.n_gpu_layers == 81 and p.n_ctx == 32768
    _fits_every_device(p)
    assert [d.device for d in p.estimate.per_device] == ["cpu", "gpu0"]


def test_40b_at_128k_one_or_two_a100s() -> None:
    # INT4 weights (~22 GiB) plus the 40 GiB f16 cache at 128K fit one A100 in llama.cpp;
    # FP16 weights (~74 GiB) with that cache need both (docs/planner.md explains the difference).
    int4 = plan(candidates_from_profile(IQUEST, ["Q4_K_M"]), machine("1xA100-80GB"), 131072, kv_type="f16")
    assert int4.n_gpu_layers == 81 and 60 * GIB < int4.estimate.total_bytes < 70 * GIB
    fp16 = candidates_from_profile(IQUEST, ["F16"])
    one = plan(fp16, machine("1xA100-80GB"), 131072, kv_type="f16")
    two = plan(fp16, machine("2xA100-80GB"), 131072, kv_type="f16")
    assert one.n_gpu_layers < 81
    assert two.backend == "local" and two.n_gpu_layers == 81
    gpus = [d for d in two.estimate.per_device if d.device != "cpu"]
    # llama.cpp splits the 81 offloaded units (80 layers + output) by free memory: 41 / 39 + output.
    assert len(gpus) == 2 and (gpus[0].n_layers, gpus[1].n_layers) == (41, 39)
    assert gpus[1].weights_bytes < gpus[0].weights_bytes + 2 * two.estimate.per_device[0].weights_bytes
    _fits_every_device(two)


def test_33b_int4_fits_one_a100() -> None:
    p = plan(candidates_from_profile(DEEPSEEK, ["Q4_K_M"]), machine("1xA100-80GB"), 16384)
    assert p.backend == "local" and p.n_gpu_layers == 63 and p.kv_type == "f16"
    assert p.estimate.total_bytes < 40 * GIB


def test_nothing_fits_goes_remote_with_numbers() -> None:
    p = plan(candidates_from_profile(IQUEST), machine("none", "16G"), 131072)
    assert p.backend == "remote" and p.n_gpu_layers == 0
    assert "needs" in p.reason and "GiB" in p.reason and "no GPU" in p.reason
    assert p.estimate.total_bytes > 16 * GIB


def test_loop_variant_goes_remote_even_when_it_would_fit() -> None:
    p = plan(candidates_from_profile(LOOP), machine("2xA100-80GB", "256G"), 32768)
    assert p.backend == "remote" and "vLLM" in p.reason
    assert any("LOOP SUPPORT" in w for w in p.warnings)


def test_partial_offload_on_a_small_gpu() -> None:
    p = plan(candidates_from_profile(IQUEST, ["Q4_K_M"]), machine("1xRTX4090-24GB"), 8192, kv_type="f16")
    assert p.backend == "local" and 0 < p.n_gpu_layers < 80
    gpu = p.estimate.per_device[1]
    # As in llama.cpp, n_gpu_layers counts the output layer: the last N-1 blocks plus the output.
    assert gpu.n_layers == p.n_gpu_layers - 1 and gpu.total_bytes <= gpu.capacity_bytes
    assert p.estimate.per_device[0].n_layers == 80 - gpu.n_layers
    more = plan(candidates_from_profile(IQUEST, ["Q4_K_M"]), machine("1xRTX4090-24GB"), 65536, kv_type="f16")
    assert more.n_gpu_layers < p.n_gpu_layers  # a bigger cache leaves room for fewer layers


def test_speed_and_quality_choose_differently() -> None:
    cands = candidates_from_profile(DEEPSEEK)
    quality = plan(cands, machine("2xA100-80GB"), 16384, "quality")
    speed = plan(cands, machine("2xA100-80GB"), 16384, "speed")
    assert QUANTS[quality.quant].bpw > QUANTS[speed.quant].bpw
    assert QUANTS[speed.quant].bpw >= MIN_GOOD_BPW
    assert speed.n_gpu_layers == quality.n_gpu_layers == 63


def test_cache_is_quantized_before_layers_leave_the_gpu() -> None:
    p = plan(candidates_from_profile(IQUEST, ["Q8_0"]), machine("1xA100-80GB"), 131072)
    assert p.n_gpu_layers == 81 and p.kv_type in ("q8_0", "q4_0") and p.flash_attn
    assert any("flash attention" in w for w in p.warnings)


def test_context_past_training_is_clamped() -> None:
    p = plan(candidates_from_profile(DEEPSEEK, ["Q4_K_M"]), machine("1xA100-80GB"), 65536)
    assert p.n_ctx == 16384 and any("training context" in w for w in p.warnings)


def test_plan_local_on_a_gguf(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", n_layer=4)
    p = plan_local(path, machine("none"), n_ctx=2048)
    assert p.backend == "local" and p.model_file == str(path) and p.quant == "F32"
    assert p.n_gpu_layers == 0 and p.kv_type == "f16" and p.estimate.per_device[0].n_layers == 4
    on_gpu = plan_local(path, machine("1xL4"), n_ctx=2048)
    assert on_gpu.n_gpu_layers == 5
    tiny_ram = plan_local(path, machine("none", "1M"), n_ctx=2048)
    assert tiny_ram.backend == "remote" and "needs" in tiny_ram.reason


def test_directory_of_quants_skips_broken_files(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "a.gguf")
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + bytes(10))
    cands, warnings = candidates_from_path(tmp_path)
    assert [Path(c.model_file).name for c in cands] == ["a.gguf"]
    assert len(warnings) == 1 and "broken.gguf" in warnings[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PlanError, match="no .gguf"):
        candidates_from_path(empty)


def test_gpu_specs() -> None:
    two = hardware.parse_gpu_spec("2xA100-80GB")
    assert len(two) == 2 and all(g.total_bytes == 80 * GIB for g in two)
    assert hardware.parse_gpu_spec("none") == ()
    assert hardware.parse_gpu_spec("H100")[0].total_bytes == 80 * GIB
    assert len(hardware.parse_gpu_spec("1xA100-40GB,1xRTX4090-24GB")) == 2
    assert hardware.parse_size("64G") == 64 * GIB and hardware.parse_size("512M") == 512 * 2**20
    for bad in ("A100", "2xA100-lots"):
        with pytest.raises(PlanError):
            hardware.parse_gpu_spec(bad)
    with pytest.raises(PlanError):
        hardware.parse_size("sixty")


def test_probe_reports_this_machine_cleanly() -> None:
    hw = hardware.probe()
    assert hw.ram_total_bytes > 0 and hw.cpu_threads >= 1 and hw.source == "probed"
    if not hw.gpus:
        assert hw.cpu_only and "CPU only" in hw.describe()
        assert any("GPU" in n for n in hw.notes)


def _run_plan(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    cmd_plan.register(parser.add_subparsers())
    args = parser.parse_args(["plan", *argv])
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run_plan(["--profile", IQUEST, "--gpu", "1xA100-80GB", "--ram", "64G", "--ctx", "32768", "--json"], capsys)
    data = json.loads(out)
    assert rc == 0
    assert {"backend", "reason", "profile", "quant", "n_gpu_layers", "n_ctx", "kv_type", "estimate"} <= data.keys()
    assert {"weights_bytes", "kv_bytes", "compute_bytes", "total_bytes", "per_device"} <= data["estimate"].keys()
    est = data["estimate"]
    assert est["total_bytes"] >= est["weights_bytes"] + est["kv_bytes"] + est["compute_bytes"]
    assert "model_file" not in data and data["backend"] == "local"


def test_cli_table_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = _run_plan(["--profile", DEEPSEEK, "--gpu", "none", "--ram", "8G", "--ctx", "16384"], capsys)
    assert rc == 0 and "backend      remote" in out and "total" in out
    rc, _, err = _run_plan(["--profile", DEEPSEEK, "--gpu", "7xWHAT"], capsys)
    assert rc == 2 and "GPU spec" in err
    rc, _, err = _run_plan([str(tmp_path / "missing.gguf")], capsys)
    assert rc == 2 and "does not exist" in err
    rc, _, err = _run_plan([], capsys)
    assert rc == 2
