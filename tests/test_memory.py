"""The memory model: KV cache, compute buffers, layer split, and accuracy against measured RSS."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from gguf_factory import write_tiny_gguf

from codeflow.quant.errors import PlanError
from codeflow.quant.gguf_info import read_gguf
from codeflow.quant.hardware import GIB, parse_gpu_spec
from codeflow.quant.memory import (
    RunConfig, compute_bytes, estimate, geometry_from_gguf, geometry_from_profile, kv_cells,
    kv_layer_bytes,
)
from codeflow.quant.profiles import get_profile, get_quant

ROOT = Path(__file__).resolve().parent.parent
# The test tolerance is wider than the benchmark's ±10% target, but a model that forgot the KV
# cache, the compute buffers or the weights would still fail it.
TOLERANCE = 0.2


def iquest(quant: str = "Q4_K_M"):
    return geometry_from_profile(get_profile("iquest-coder-v1-40b-instruct"), get_quant(quant))


def test_kv_cache_size_and_types() -> None:
    g = iquest()
    f16 = kv_layer_bytes(g, RunConfig(n_ctx=131072)) * g.n_layer
    assert f16 == 80 * 2 * 8 * 128 * 2 * 131072  # 40 GiB: layers x (K+V) x kv heads x dim x 2 B
    q8 = kv_layer_bytes(g, RunConfig(n_ctx=131072, kv_type="q8_0")) * g.n_layer
    q4 = kv_layer_bytes(g, RunConfig(n_ctx=131072, kv_type="q4_0")) * g.n_layer
    assert q8 * 64 == f16 * 34 and q4 * 64 == f16 * 18
    with pytest.raises(PlanError, match="KV cache type"):
        kv_layer_bytes(g, RunConfig(kv_type="q5_1"))


def test_context_is_padded_like_llama_cpp() -> None:
    assert [kv_cells(n) for n in (1, 256, 1000, 4096, 4097)] == [256, 256, 1024, 4096, 4352]


def test_compute_grows_with_context_without_flash_attention() -> None:
    g = iquest()
    small = compute_bytes(g, RunConfig(n_ctx=4096), n_outputs=1, host=True)
    big = compute_bytes(g, RunConfig(n_ctx=32768), n_outputs=1, host=True)
    flash = compute_bytes(g, RunConfig(n_ctx=32768, flash_attn=True), n_outputs=1, host=True)
    assert big > 6 * small and flash < big / 10
    # A GPU commits the whole reserved buffer, logits of a full ubatch included.
    gpu = compute_bytes(g, RunConfig(n_ctx=512, flash_attn=True), n_outputs=512, host=False)
    assert gpu >= 4 * 76800 * 512


def test_layers_split_by_free_memory() -> None:
    g = iquest("F16")
    gpus = parse_gpu_spec("1xA100-80GB,1xA100-40GB")
    est = estimate(g, RunConfig(n_ctx=4096), 81, gpus)
    big, small = est.per_device[1], est.per_device[2]
    assert big.n_layers + small.n_layers == 80
    assert 50 <= big.n_layers <= 56  # 2/3 of the 81 offloaded units
    assert est.per_device[0].n_layers == 0 and est.per_device[0].weights_bytes == g.input_bytes
    # Every weight byte is somewhere, exactly once (the output is untied).
    assert est.weights_bytes == sum(g.layer_bytes) + g.input_bytes + g.output_bytes


def test_partial_offload_keeps_the_first_layers_on_the_host() -> None:
    g = iquest()
    est = estimate(g, RunConfig(n_ctx=4096), 30, parse_gpu_spec("1xL4"))
    host, gpu = est.per_device
    assert (host.n_layers, gpu.n_layers) == (51, 29)
    assert gpu.weights_bytes == sum(g.layer_bytes[51:]) + g.output_bytes
    assert host.kv_bytes == 51 * kv_layer_bytes(g, RunConfig(n_ctx=4096))


def test_tied_output_is_copied_to_the_gpu(tmp_path: Path) -> None:
    info = read_gguf(write_tiny_gguf(tmp_path / "m.gguf"))
    g = geometry_from_gguf(info)
    assert not g.tied_output  # the factory writes an output matrix
    tied = g.__class__(**{**{f: getattr(g, f) for f in g.__struct_fields__}, "tied_output": True, "output_bytes": 0})
    on_gpu = estimate(tied, RunConfig(n_ctx=512), 99, parse_gpu_spec("1xL4"))
    on_cpu = estimate(tied, RunConfig(n_ctx=512), 0)
    assert on_gpu.per_device[1].weights_bytes >= g.input_bytes
    assert on_cpu.weights_bytes == g.input_bytes + sum(g.layer_bytes)


def test_cpu_only_estimate_has_one_device(tmp_path: Path) -> None:
    g = geometry_from_gguf(read_gguf(write_tiny_gguf(tmp_path / "m.gguf", n_layer=3)))
    est = estimate(g, RunConfig(n_ctx=2048), 0, parse_gpu_spec("1xL4"))
    assert [d.device for d in est.per_device] == ["cpu"] and est.per_device[0].n_layers == 3
    assert est.total_bytes == est.weights_bytes + est.kv_bytes + est.compute_bytes + est.overhead_bytes
    assert est.total_bytes < GIB


# --- accuracy against a real llama.cpp process -------------------------------------------------


def _bench():
    spec = importlib.util.spec_from_file_location("bench_plan", ROOT / "bench" / "plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("llama_cpp")
    return _bench()


@pytest.mark.parametrize("shape", [
    dict(n_layer=4, n_embd=256, n_head=4, n_head_kv=2, n_ff=768),
    dict(n_layer=6, n_embd=512, n_head=8, n_head_kv=4, n_ff=1536),
])
def test_estimate_matches_measured_rss_generated(bench, tmp_path: Path, shape: dict) -> None:
    model = write_tiny_gguf(tmp_path / "gen.gguf", n_ctx=4096, **shape)
    r = bench.row("gen", model, 2048, 2048)
    assert r["measured"]["filled"] == 2048
    assert abs(r["ratio"] - 1) <= TOLERANCE, r


def test_estimate_matches_measured_rss_default_model(bench) -> None:
    r = bench.row("default", bench.default_model(), 2048, 2048)
    assert abs(r["ratio"] - 1) <= TOLERANCE, r
