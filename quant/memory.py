"""How much memory llama.cpp will need for a model, a context and a layer split.

The figures follow what the vendored llama.cpp allocates (llama-context.cpp, llama-kv-cache.cpp):
- weights: each tensor's bytes; repeating layers go to GPUs from the last layer down, the input
  embedding always stays on the host, the output matrix goes with the last GPU when all layers are
  offloaded (a tied output is then a second copy of the embedding);
- KV cache: n_ctx padded to 256 cells, K and V rows of `n_head_kv * head_dim` per layer in the
  cache type, cleared at creation, so fully resident; llama-cpp-python's default `swa_full=True`
  gives sliding-window layers a full-size cache too;
- compute buffers: the worst-case graph, one ubatch of tokens attending to the full cache;
  without flash attention the KQ matrix (n_ctx x n_ubatch x n_head floats) dominates. On a GPU
  the whole reserved buffer is committed (cudaMalloc), so the logits of n_ubatch outputs count;
  on the host pages are committed only when touched, and llama-cpp-python asks for one output per
  batch, so only that row counts;
- overhead: the vocabulary's host structures, and a CUDA context per GPU.
"""

from __future__ import annotations

import msgspec

from codeflow.quant.errors import PlanError
from codeflow.quant.gguf_info import GGUFInfo
from codeflow.quant.hardware import GpuDevice
from codeflow.quant.profiles import Profile, QuantType

MIB = 1024**2
KV_TYPES = ("f16", "q8_0", "q4_0")
# Bytes of a row of `n` elements: (block size, bytes per block) of ggml's types.
_KV_BLOCK = {"f32": (1, 4), "f16": (1, 2), "q8_0": (32, 34), "q4_0": (32, 18)}
KV_PAD = 256
# CUDA context, cuBLAS workspace and driver reservations per GPU: NVML's used memory minus
# llama.cpp's own buffers was 701-705 MiB on an H100 (driver 580, CUDA 13, llama-cpp-python
# 0.3.36) in every row of bench/results/gpu.json; 600 MiB had every estimate ~100 MiB short.
GPU_RUNTIME_BYTES = 704 * MIB
# Host memory of the llama.cpp runtime and loaded vocabulary, fitted against measured RSS.
HOST_BASE_BYTES = 4 * MIB
VOCAB_BYTES_PER_TOKEN = 170


class Geometry(msgspec.Struct, kw_only=True, frozen=True):
    """A model's shape and tensor sizes: all the memory model needs."""

    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    n_vocab: int
    n_ctx_train: int
    layer_bytes: tuple[int, ...]
    input_bytes: int
    output_bytes: int
    tied_output: bool = False
    loop: int = 1
    # Sliding-window layers get a second attention mask (Gemma 3 and similar).
    swa: bool = False


class RunConfig(msgspec.Struct, kw_only=True, frozen=True):
    """The llama.cpp context parameters that change memory use (llama-cpp-python defaults)."""

    n_ctx: int = 4096
    kv_type: str = "f16"
    n_batch: int = 512
    n_ubatch: int = 512
    flash_attn: bool = False
    # Outputs per batch the caller asks for: 1 for generation (llama-cpp-python's default).
    n_outputs: int = 1
    # Cache cells the attention reads; 0 means all of them, the worst case a plan must allow.
    n_kv: int = 0


class DeviceUse(msgspec.Struct, kw_only=True, frozen=True):
    """What one device holds under a plan."""

    device: str
    name: str = ""
    n_layers: int = 0
    weights_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0
    overhead_bytes: int = 0
    total_bytes: int = 0
    capacity_bytes: int = 0


class Estimate(msgspec.Struct, kw_only=True, frozen=True):
    """A memory estimate: totals over all devices and the per-device split."""

    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    total_bytes: int
    per_device: tuple[DeviceUse, ...]


def _row(kind: str, n: int) -> int:
    block, size = _KV_BLOCK[kind]
    return n // block * size


def kv_cells(n_ctx: int) -> int:
    """Cache cells llama.cpp allocates for a requested context (padded to 256)."""
    return -(-n_ctx // KV_PAD) * KV_PAD


def kv_layer_bytes(geom: Geometry, cfg: RunConfig) -> int:
    """K plus V cache bytes of one layer."""
    if cfg.kv_type not in KV_TYPES:
        raise PlanError(f"unknown KV cache type {cfg.kv_type!r}; use one of {', '.join(KV_TYPES)}")
    for dim in (geom.n_head_kv * geom.head_dim_k, geom.n_head_kv * geom.head_dim_v):
        if dim % _KV_BLOCK[cfg.kv_type][0]:
            raise PlanError(f"KV rows of {dim} elements cannot use {cfg.kv_type} blocks")
    k = _row(cfg.kv_type, geom.n_head_kv * geom.head_dim_k)
    v = _row(cfg.kv_type, geom.n_head_kv * geom.head_dim_v)
    return (k + v) * kv_cells(cfg.n_ctx)


def compute_bytes(geom: Geometry, cfg: RunConfig, *, n_outputs: int, host: bool) -> int:
    """Peak scratch memory of one worst-case ubatch: full cache, `n_outputs` logits rows."""
    t = min(cfg.n_ubatch, cfg.n_batch, kv_cells(cfg.n_ctx))
    k = kv_cells(min(cfg.n_kv, cfg.n_ctx) if cfg.n_kv else cfg.n_ctx)
    # The residual stream and the attention output (wider than n_embd on e.g. Gemma 3).
    stream = 4 * t * max(geom.n_embd, geom.n_head * geom.head_dim_v)
    masks = 2 if geom.swa else 1
    if cfg.flash_attn:
        attn = 4 * t * geom.n_head * geom.head_dim_v * 2 + 2 * k * t * masks
    else:
        kq = 4 * k * t * geom.n_head
        # The CPU backend converts KQ to f16 for the KQ*V product, in its own work buffer.
        attn = kq + 4 * k * t * masks + (kq // 2 if host else 0)
    ffn = 4 * t * geom.n_ff * 2
    logits = 4 * geom.n_vocab * max(1, n_outputs)
    return max(attn, ffn, logits) + 6 * stream


def _split_layers(n_layer: int, n_gpu_layers: int, gpus: tuple[GpuDevice, ...]) -> list[int]:
    """Device of each layer (-1: host) and of the output (index n_layer), as llama.cpp splits.

    Offloaded layers are the last `n_gpu_layers`; across GPUs they are split in proportion to
    each GPU's free memory (llama_model::load_tensors with no tensor_split).
    """
    ngl = max(0, min(n_gpu_layers, n_layer + 1)) if gpus else 0
    start = n_layer + 1 - ngl
    free = [max(g.free_bytes, 1) for g in gpus]
    cuts, acc = [], 0
    for f in free:
        acc += f
        cuts.append(acc / sum(free))
    out = []
    for il in range(n_layer + 1):
        if il < start:
            out.append(-1)
            continue
        frac = (il - start) / ngl
        out.append(next(i for i, c in enumerate(cuts) if frac < c))
    return out


def geometry_from_gguf(info: GGUFInfo) -> Geometry:
    """The geometry of a GGUF file, with its real per-tensor sizes."""
    layers = info.layer_bytes()
    output = info.global_bytes("output.") + info.global_bytes("output_norm.")
    tied = not any(t.name.startswith("output.") for t in info.tensors)
    return Geometry(
        arch=info.arch, n_layer=info.n_layer, n_embd=info.n_embd, n_head=info.n_head,
        n_head_kv=info.n_head_kv, head_dim_k=info.head_dim_k, head_dim_v=info.head_dim_v,
        n_ff=info.n_ff, n_vocab=info.n_vocab, n_ctx_train=info.n_ctx_train,
        layer_bytes=tuple(layers), input_bytes=info.global_bytes("token_embd."),
        output_bytes=output, tied_output=tied, loop=info.loop, swa=info.sliding_window > 0,
    )


def geometry_from_profile(profile: Profile, quant: QuantType) -> Geometry:
    """The geometry of a profile quantized to `quant`, from its parameter counts."""
    per_bit = quant.bpw / 8
    embd = int(profile.n_vocab * profile.n_embd * per_bit)
    return Geometry(
        arch=profile.arch, n_layer=profile.n_layer, n_embd=profile.n_embd, n_head=profile.n_head,
        n_head_kv=profile.n_head_kv, head_dim_k=profile.head_dim, head_dim_v=profile.head_dim,
        n_ff=profile.n_ff, n_vocab=profile.n_vocab, n_ctx_train=profile.n_ctx_train,
        layer_bytes=(int(profile.layer_params() * per_bit),) * profile.n_layer,
        input_bytes=embd, output_bytes=0 if profile.tied_embeddings else embd,
        tied_output=profile.tied_embeddings, loop=profile.loop,
    )


def _device_use(device: str, name: str, capacity: int, **parts: int) -> DeviceUse:
    total = sum(v for k, v in parts.items() if k.endswith("_bytes"))
    return DeviceUse(device=device, name=name, capacity_bytes=capacity, total_bytes=total, **parts)


def estimate(
    geom: Geometry, cfg: RunConfig, n_gpu_layers: int = 0, gpus: tuple[GpuDevice, ...] = (),
    ram_bytes: int = 0,
) -> Estimate:
    """Memory per device for `geom` run with `cfg`, the last `n_gpu_layers` layers on `gpus`."""
    where = _split_layers(geom.n_layer, n_gpu_layers, gpus)
    kv_layer = kv_layer_bytes(geom, cfg)
    out_dev = where[geom.n_layer]
    # A tied output offloaded to a GPU is a copy of the embedding; on the host it is shared.
    out_bytes = geom.output_bytes + (geom.input_bytes if geom.tied_output and out_dev >= 0 else 0)
    devices = []
    for i, gpu in enumerate(gpus):
        mine = [il for il in range(geom.n_layer) if where[il] == i]
        if not mine and out_dev != i:
            continue
        holds_out = out_dev == i
        devices.append(_device_use(
            f"gpu{gpu.index}", gpu.name, gpu.free_bytes, n_layers=len(mine),
            weights_bytes=sum(geom.layer_bytes[il] for il in mine) + (out_bytes if holds_out else 0),
            kv_bytes=kv_layer * len(mine),
            compute_bytes=compute_bytes(geom, cfg, n_outputs=cfg.n_ubatch if holds_out else 1, host=False),
            overhead_bytes=GPU_RUNTIME_BYTES,
        ))
    host_layers = [il for il in range(geom.n_layer) if where[il] < 0]
    host_compute = compute_bytes(geom, cfg, n_outputs=cfg.n_outputs, host=True)
    if not host_layers and out_dev >= 0:
        # Only the embedding lookup and the logits copy run on the host.
        host_compute = 4 * geom.n_vocab * cfg.n_outputs + 8 * cfg.n_ubatch * geom.n_embd
    devices.insert(0, _device_use(
        "cpu", "host RAM", ram_bytes, n_layers=len(host_layers),
        weights_bytes=geom.input_bytes + sum(geom.layer_bytes[il] for il in host_layers)
        + (out_bytes if out_dev < 0 else 0),
        kv_bytes=kv_layer * len(host_layers), compute_bytes=host_compute,
        overhead_bytes=HOST_BASE_BYTES + VOCAB_BYTES_PER_TOKEN * geom.n_vocab,
    ))
    return Estimate(
        weights_bytes=sum(d.weights_bytes for d in devices), kv_bytes=sum(d.kv_bytes for d in devices),
        compute_bytes=sum(d.compute_bytes for d in devices),
        overhead_bytes=sum(d.overhead_bytes for d in devices),
        total_bytes=sum(d.total_bytes for d in devices), per_device=tuple(devices),
    )
