"""What this machine can run on: GPUs through NVML, RAM and cores through psutil, or given specs."""

from __future__ import annotations

import logging
import platform
import re

import msgspec
import psutil

from codeflow.quant.errors import PlanError

log = logging.getLogger(__name__)

GIB = 1024**3

# Memory of cards a spec may name without a size; names with several sizes (A100) need one.
KNOWN_GPUS = {
    "H100": 80, "H200": 141, "L4": 24, "L40S": 48, "L40": 48, "A10": 24, "A10G": 24, "T4": 16,
    "V100": 16, "RTX4090": 24, "RTX3090": 24, "RTX4080": 16, "RTX3060": 12, "A6000": 48,
}
_GPU_SPEC = re.compile(r"^(?:(\d+)\s*[x×*]\s*)?([A-Za-z0-9_.]+?)(?:[-_ ](\d+(?:\.\d+)?)\s*(GB|G|GIB))?$", re.I)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?B?)\s*$", re.I)


class GpuDevice(msgspec.Struct, kw_only=True, frozen=True):
    """One accelerator: its memory in bytes and what it is."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: str | None = None
    kind: str = "cuda"


class Hardware(msgspec.Struct, kw_only=True, frozen=True):
    """The machine the planner reasons about, probed or given on the command line."""

    gpus: tuple[GpuDevice, ...] = ()
    ram_total_bytes: int = 0
    ram_available_bytes: int = 0
    cpu_cores: int = 1
    cpu_threads: int = 1
    # Whether the installed llama.cpp build can offload layers (None: llama_cpp not importable).
    gpu_offload: bool | None = None
    metal: bool = False
    source: str = "probed"
    notes: tuple[str, ...] = ()

    @property
    def cpu_only(self) -> bool:
        """No usable accelerator: no GPU, or a llama.cpp build that cannot offload."""
        return not self.gpus or self.gpu_offload is False

    def describe(self) -> str:
        """One line such as `2x A100-80GB (160.0 GiB), 60.1 GiB RAM free of 64.0 GiB`."""
        ram = f"{self.ram_available_bytes / GIB:.1f} GiB RAM free of {self.ram_total_bytes / GIB:.1f} GiB"
        if not self.gpus:
            return f"CPU only ({self.cpu_cores} cores), {ram}"
        total = sum(g.total_bytes for g in self.gpus)
        names = sorted({g.name for g in self.gpus})
        return f"{len(self.gpus)}x {'/'.join(names)} ({total / GIB:.1f} GiB), {ram}"


def parse_size(text: str) -> int:
    """Bytes from "64G", "64GB", "24GiB", "512M" or a plain number of bytes; G means 2**30."""
    match = _SIZE.match(text)
    if not match:
        raise PlanError(f"cannot read size {text!r}; use a form like 64G or 24GB")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** "BKMGT".index(unit or "B"))


def parse_gpu_spec(spec: str) -> tuple[GpuDevice, ...]:
    """Devices from "1xA100-80GB", "2xA100-80GB", "H100", "2xRTX4090", "none" or a comma list."""
    spec = spec.strip()
    if spec.lower() in ("none", "cpu", "0", ""):
        return ()
    devices: list[GpuDevice] = []
    for part in spec.split(","):
        match = _GPU_SPEC.match(part.strip())
        if not match:
            raise PlanError(f"cannot read GPU spec {part!r}; use a form like 2xA100-80GB or none")
        count, name, size, _unit = match.groups()
        if size is None:
            if name.upper() not in KNOWN_GPUS:
                raise PlanError(f"GPU spec {part!r} needs a memory size, e.g. {name}-80GB")
            size = KNOWN_GPUS[name.upper()]
        # Cards are sold in decimal-ish "GB" that are really GiB of memory (an 80GB A100 has 80 GiB).
        total = int(float(size) * GIB)
        for _ in range(int(count or 1)):
            devices.append(GpuDevice(index=len(devices), name=f"{name}-{size}GB", total_bytes=total,
                                     free_bytes=total, kind="given"))
    return tuple(devices)


def _nvml_gpus() -> tuple[tuple[GpuDevice, ...], str | None]:
    """NVIDIA devices through NVML; a machine without the driver reports none, with the reason."""
    try:
        import pynvml
    except ImportError:
        return (), "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return (), f"no NVIDIA driver ({exc})"
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            devices.append(GpuDevice(
                index=i, name=name.decode() if isinstance(name, bytes) else str(name),
                total_bytes=int(mem.total), free_bytes=int(mem.free),
                compute_capability=f"{major}.{minor}",
            ))
        return tuple(devices), None
    except pynvml.NVMLError as exc:
        return (), f"NVML query failed ({exc})"
    finally:
        pynvml.nvmlShutdown()


def _llama_offload() -> bool | None:
    """Whether the installed llama.cpp build was compiled with a GPU backend."""
    try:
        import llama_cpp
    except Exception as exc:  # noqa: BLE001 - a broken build must not stop the probe
        log.debug("llama_cpp not importable: %s", exc)
        return None
    return bool(llama_cpp.llama_supports_gpu_offload())


def _metal() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def probe() -> Hardware:
    """Probe this machine: NVIDIA GPUs, Apple Metal, RAM, cores and llama.cpp's offload support."""
    gpus, why = _nvml_gpus()
    notes = [f"no NVIDIA GPU: {why}"] if why else []
    offload = _llama_offload()
    metal = _metal()
    mem = psutil.virtual_memory()
    if metal:
        # Apple GPUs share RAM; llama.cpp's Metal backend may use about 2/3 of it by default.
        share = int(mem.total * 2 / 3)
        gpus = (GpuDevice(index=0, name="Apple Metal", total_bytes=share, free_bytes=share,
                          kind="metal"),)
        notes.append("Apple Metal: GPU memory is shared with RAM")
    if gpus and offload is False:
        notes.append("this llama.cpp build cannot offload to a GPU; rebuild with CUDA/Metal")
    if offload is None:
        notes.append("llama_cpp not importable; GPU offload support unknown")
    return Hardware(
        gpus=gpus, ram_total_bytes=int(mem.total), ram_available_bytes=int(mem.available),
        cpu_cores=psutil.cpu_count(logical=False) or 1, cpu_threads=psutil.cpu_count() or 1,
        gpu_offload=offload, metal=metal, source="probed", notes=tuple(notes),
    )


def given(gpu: str | None = None, ram: str | None = None, base: Hardware | None = None) -> Hardware:
    """Hardware described on the command line; what is not given comes from `base` (or a probe)."""
    if gpu is None and ram is None and base is not None:
        return base
    base = base or probe()
    gpus = parse_gpu_spec(gpu) if gpu is not None else base.gpus
    ram_bytes = parse_size(ram) if ram is not None else None
    notes = tuple(n for n in base.notes if gpu is None or "GPU" not in n)
    return msgspec.structs.replace(
        base, gpus=gpus, source="given",
        ram_total_bytes=ram_bytes or base.ram_total_bytes,
        ram_available_bytes=ram_bytes or base.ram_available_bytes,
        # A described GPU is assumed to run a GPU-enabled llama.cpp or server.
        gpu_offload=True if gpu is not None and gpus else base.gpu_offload,
        notes=notes,
    )
