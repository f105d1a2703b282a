"""Read a GGUF file's metadata and tensor table without loading the model.

`gguf.GGUFReader` builds a Python object for every vocabulary entry, which takes tens of seconds
on a 262K-token vocabulary, so this module walks the header itself with `mmap` and `struct` and
uses the `gguf` package only for its constants (value types, quant block sizes, key names, file
types). Large arrays are skipped by offset; the token list is scanned only for FIM markers.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import re
import struct
from pathlib import Path
from typing import Any

import gguf
import msgspec

from codeflow.quant.backend import FimTokens
from codeflow.quant.errors import GGUFError

_VT = gguf.GGUFValueType
_SCALAR = {
    _VT.UINT8: "<B", _VT.INT8: "<b", _VT.UINT16: "<H", _VT.INT16: "<h", _VT.UINT32: "<I",
    _VT.INT32: "<i", _VT.FLOAT32: "<f", _VT.BOOL: "<?", _VT.UINT64: "<Q", _VT.INT64: "<q",
    _VT.FLOAT64: "<d",
}
# Arrays longer than this are kept as (offset, count) instead of decoded.
_MAX_DECODED = 4096
_LAYER = re.compile(r"^blk\.(\d+)\.")
_SPLIT = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")

# (prefix, suffix, middle, file_sep, repo_name) marker strings of the common code-model families.
FIM_MARKERS: tuple[tuple[str, str, str, str | None, str | None], ...] = (
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_sep|>", "<|repo_name|>"),
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<reponame>"),
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", None, None),
    ("▁<PRE>", "▁<SUF>", "▁<MID>", None, None),
    ("<PRE>", "<SUF>", "<MID>", None, None),
    ("<|fim▁begin|>", "<|fim▁hole|>", "<|fim▁end|>", None, None),
)
_EOT_MARKERS = ("<|endoftext|>", "<|fim_pad|>", "<EOT>", "▁<EOT>", "<｜end▁of▁sentence｜>",
                "<|file_separator|>", "<|im_end|>", "</s>")


class TensorInfo(msgspec.Struct, kw_only=True, frozen=True):
    """One tensor of the file: its ggml type, size and the layer it belongs to (None: global)."""

    name: str
    type: str
    shape: tuple[int, ...]
    n_elements: int
    n_bytes: int
    layer: int | None


class GGUFInfo(msgspec.Struct, kw_only=True, frozen=True):
    """What the planner and the backends need to know about a GGUF model file."""

    path: str
    name: str
    arch: str
    file_type: str
    file_size: int
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    n_ctx_train: int
    n_vocab: int
    sliding_window: int = 0
    rope_scaling: str | None = None
    fim: FimTokens | None = None
    chat_template: str | None = None
    split_count: int = 1
    # Passes over the layers per token (IQuest Loop models: 2); llama.cpp runs only one.
    loop: int = 1
    tensors: tuple[TensorInfo, ...] = ()

    @property
    def weights_bytes(self) -> int:
        """Bytes of all tensor data."""
        return sum(t.n_bytes for t in self.tensors)

    def layer_bytes(self) -> list[int]:
        """Bytes of each repeating layer's tensors, indexed by layer."""
        out = [0] * self.n_layer
        for t in self.tensors:
            if t.layer is not None and t.layer < self.n_layer:
                out[t.layer] += t.n_bytes
        return out

    def global_bytes(self, prefix: str) -> int:
        """Bytes of the non-layer tensors whose name starts with `prefix` (token_embd, output)."""
        return sum(t.n_bytes for t in self.tensors if t.layer is None and t.name.startswith(prefix))


class _Cursor:
    """A little-endian reader over the mapped file; every read is bounds-checked."""

    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFError(f"{self.path}: truncated at byte {self.pos} (file is {len(self.buf)} bytes)")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise GGUFError(f"{self.path}: string of {n} bytes runs past the end of the file")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype == _VT.STRING:
            return self.string()
        if vtype == _VT.ARRAY:
            return self.array()
        fmt = _SCALAR.get(vtype)  # type: ignore[call-overload]
        if fmt is None:
            raise GGUFError(f"{self.path}: unknown metadata value type {vtype} at byte {self.pos}")
        return self.take(fmt)

    def array(self) -> Any:
        itype, count = self.take("<I"), self.take("<Q")
        if count <= _MAX_DECODED:
            return [self.value(itype) for _ in range(count)]
        start = self.pos
        if itype == _VT.STRING:
            for _ in range(count):
                n = self.take("<Q")
                self.pos += n
        elif itype in _SCALAR:
            self.pos += struct.calcsize(_SCALAR[itype]) * count  # type: ignore[index]
        else:
            raise GGUFError(f"{self.path}: unsupported array item type {itype}")
        if self.pos > len(self.buf):
            raise GGUFError(f"{self.path}: array of {count} items runs past the end of the file")
        return _LazyArray(start=start, end=self.pos, count=count, itype=itype)


class _LazyArray(msgspec.Struct, frozen=True):
    """A large metadata array left in the file: its byte range and item count."""

    start: int
    end: int
    count: int
    itype: int


def _read_header(buf: mmap.mmap, path: Path) -> tuple[dict[str, Any], list[TensorInfo]]:
    cur = _Cursor(buf, path)
    if len(buf) < 24 or buf[:4] != b"GGUF":
        raise GGUFError(f"{path}: not a GGUF file (bad magic {bytes(buf[:4])!r})")
    cur.pos = 4
    version = cur.take("<I")
    if version not in (2, 3):
        raise GGUFError(f"{path}: unsupported GGUF version {version}")
    n_tensors, n_kv = cur.take("<Q"), cur.take("<Q")
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise GGUFError(f"{path}: implausible header ({n_tensors} tensors, {n_kv} keys)")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        meta[key] = cur.value(cur.take("<I"))
    ends: list[int] = []
    tensors = [_read_tensor(cur, ends) for _ in range(n_tensors)]
    align = meta.get("general.alignment", 32)
    align = align if isinstance(align, int) and align > 0 else 32
    data_end = -(-cur.pos // align) * align + max(ends, default=0)
    if data_end > len(buf):
        raise GGUFError(
            f"{path}: tensor data runs to byte {data_end} but the file has {len(buf)} bytes "
            "(truncated download?)"
        )
    return meta, tensors


def _read_tensor(cur: _Cursor, ends: list[int]) -> TensorInfo:
    name = cur.string()
    n_dims = cur.take("<I")
    if n_dims > 8:
        raise GGUFError(f"{cur.path}: tensor {name} has {n_dims} dimensions")
    shape = tuple(cur.take("<Q") for _ in range(n_dims))
    ttype = cur.take("<I")
    offset = cur.take("<Q")  # relative to the aligned start of the data section
    try:
        qtype = gguf.GGMLQuantizationType(ttype)
        block, size = gguf.GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError) as exc:
        raise GGUFError(f"{cur.path}: tensor {name} has unknown ggml type {ttype}") from exc
    n_elements = 1
    for d in shape:
        n_elements *= d
    match = _LAYER.match(name)
    n_bytes = n_elements // block * size
    ends.append(offset + n_bytes)
    return TensorInfo(
        name=name, type=qtype.name, shape=shape, n_elements=n_elements,
        n_bytes=n_bytes, layer=int(match.group(1)) if match else None,
    )


def _tokens_with(buf: mmap.mmap, arr: _LazyArray, wanted: set[str]) -> dict[str, int]:
    """Ids of the `wanted` strings in the token list; a cheap byte search rejects most files."""
    if not any(buf.find(w.encode(), arr.start, arr.end) >= 0 for w in wanted):
        return {}
    found: dict[str, int] = {}
    pos = arr.start
    encoded = {w.encode(): w for w in wanted}
    for i in range(arr.count):
        (n,) = struct.unpack_from("<Q", buf, pos)
        tok = buf[pos + 8 : pos + 8 + n]
        pos += 8 + n
        if tok in encoded:
            found[encoded[tok]] = i
    return found


def _tokens_at(buf: mmap.mmap, arr: _LazyArray | list[str], ids: set[int]) -> dict[int, str]:
    """The token strings at the given ids."""
    if isinstance(arr, list):
        return {i: arr[i] for i in ids if 0 <= i < len(arr)}
    out: dict[int, str] = {}
    pos, last = arr.start, max(ids, default=-1)
    for i in range(min(arr.count, last + 1)):
        (n,) = struct.unpack_from("<Q", buf, pos)
        if i in ids:
            out[i] = bytes(buf[pos + 8 : pos + 8 + n]).decode("utf-8", errors="replace")
        pos += 8 + n
    return out


def _fim_from_metadata(buf: mmap.mmap, meta: dict[str, Any]) -> FimTokens | None:
    """FIM markers named by id in the metadata (new `fim_*` keys, or the older prefix/suffix ones)."""
    key = "tokenizer.ggml.{}_token_id"
    ids = {}
    for role, names in (("pre", ("fim_pre", "prefix")), ("suf", ("fim_suf", "suffix")),
                        ("mid", ("fim_mid", "middle")), ("sep", ("fim_sep",)),
                        ("rep", ("fim_rep",)), ("eot", ("eot", "fim_pad"))):
        for name in names:
            value = meta.get(key.format(name))
            if isinstance(value, int) and value >= 0:
                ids[role] = value
                break
    if not {"pre", "suf", "mid"} <= ids.keys():
        return None
    tokens = meta.get("tokenizer.ggml.tokens")
    if tokens is None:
        return None
    text = _tokens_at(buf, tokens, set(ids.values()))
    if not all(ids[r] in text for r in ("pre", "suf", "mid")):
        return None
    return FimTokens(
        prefix=text[ids["pre"]], suffix=text[ids["suf"]], middle=text[ids["mid"]],
        file_sep=text.get(ids.get("sep", -1)), repo_name=text.get(ids.get("rep", -1)),
        eot=(text[ids["eot"]],) if ids.get("eot") in text else (),
    )


def _fim_from_vocab(buf: mmap.mmap, meta: dict[str, Any]) -> FimTokens | None:
    """FIM markers found by their well-known strings in the token list."""
    tokens = meta.get("tokenizer.ggml.tokens")
    if tokens is None:
        return None
    wanted = {m for family in FIM_MARKERS for m in family if m} | set(_EOT_MARKERS)
    if isinstance(tokens, list):
        have = {t: i for i, t in enumerate(tokens) if t in wanted}
    else:
        have = _tokens_with(buf, tokens, wanted)
    for pre, suf, mid, sep, rep in FIM_MARKERS:
        if pre in have and suf in have and mid in have:
            eot = tuple(m for m in _EOT_MARKERS if m in have)
            return FimTokens(
                prefix=pre, suffix=suf, middle=mid, eot=eot,
                file_sep=sep if sep in have else None, repo_name=rep if rep in have else None,
            )
    return None


def _file_type(meta: dict[str, Any], tensors: list[TensorInfo]) -> str:
    """The quant name ("Q4_K_M") from general.file_type, else the type holding the most bytes."""
    code = meta.get("general.file_type")
    if isinstance(code, int):
        try:
            return gguf.LlamaFileType(code).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    by_type: dict[str, int] = {}
    for t in tensors:
        by_type[t.type] = by_type.get(t.type, 0) + t.n_bytes
    return max(by_type, key=by_type.__getitem__) if by_type else "unknown"


def _first(value: Any, default: int = 0) -> int:
    """Per-layer arrays (some architectures vary heads or FFN width by layer) become their max."""
    if isinstance(value, list):
        return max((int(v) for v in value), default=default)
    return int(value) if isinstance(value, (int, float)) else default


def _split_parts(path: Path, meta: dict[str, Any]) -> list[Path]:
    """The other files of a `gguf-split` model (`name-00001-of-00003.gguf`)."""
    count = meta.get("split.count")
    match = _SPLIT.match(path.name)
    if not isinstance(count, int) or count <= 1 or match is None:
        return []
    stem = match.group(1)
    parts = [path.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise GGUFError(f"{path}: split model is missing {', '.join(missing)}")
    return [p for p in parts if p != path]


def _open(path: Path) -> tuple[mmap.mmap, Any]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise GGUFError(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), handle
    except (OSError, ValueError) as exc:
        handle.close()
        raise GGUFError(f"{path}: cannot map file ({exc}); empty or not a regular file") from exc


def _scan(path: Path) -> tuple[dict[str, Any], list[TensorInfo], FimTokens | None]:
    buf, handle = _open(path)
    try:
        meta, tensors = _read_header(buf, path)
        fim = _fim_from_metadata(buf, meta) or _fim_from_vocab(buf, meta)
    finally:
        buf.close()
        handle.close()
    return meta, tensors, fim


def read_gguf(path: Path | str) -> GGUFInfo:
    """Read the geometry, quant type, tensor sizes, FIM markers and template of a GGUF file."""
    path = Path(path)
    meta, tensors, fim = _scan(path)
    size = path.stat().st_size
    for part in _split_parts(path, meta):
        _, more, _ = _scan(part)
        tensors += more
        size += part.stat().st_size
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise GGUFError(f"{path}: no general.architecture key; not a model file")
    a = lambda key, default=0: _first(meta.get(f"{arch}.{key}"), default)  # noqa: E731
    n_embd, n_head = a("embedding_length"), a("attention.head_count")
    if n_embd <= 0 or a("block_count") <= 0:
        raise GGUFError(f"{path}: missing {arch}.embedding_length or {arch}.block_count")
    head_dim = n_embd // n_head if n_head else 0
    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = a("vocab_size") or (len(tokens) if isinstance(tokens, list) else getattr(tokens, "count", 0))
    template = meta.get("tokenizer.chat_template")
    scaling = meta.get(f"{arch}.rope.scaling.type")
    return GGUFInfo(
        path=str(path), name=str(meta.get("general.name") or path.stem), arch=arch,
        file_type=_file_type(meta, tensors), file_size=size, n_layer=a("block_count"),
        n_embd=n_embd, n_head=n_head, n_head_kv=a("attention.head_count_kv", n_head) or n_head,
        head_dim_k=a("attention.key_length", head_dim) or head_dim,
        head_dim_v=a("attention.value_length", head_dim) or head_dim,
        n_ff=a("feed_forward_length"), n_ctx_train=a("context_length"), n_vocab=n_vocab,
        sliding_window=a("attention.sliding_window"),
        rope_scaling=scaling if isinstance(scaling, str) and scaling != "none" else None,
        fim=fim, chat_template=template if isinstance(template, str) and template else None,
        split_count=_first(meta.get("split.count"), 1) or 1, loop=_loop_count(meta, arch),
        tensors=tuple(tensors),
    )


def _loop_count(meta: dict[str, Any], arch: str) -> int:
    """Loop passes from a `*.loop_num` key, or 2 for a file named or built as a Loop model."""
    for key in (f"{arch}.loop_num", "general.loop_num"):
        if isinstance(meta.get(key), int) and meta[key] > 1:
            return int(meta[key])
    name = f"{meta.get('general.name', '')} {meta.get('general.basename', '')} {arch}".lower()
    return 2 if "loopcoder" in name or "-loop-" in name or "loop-instruct" in name else 1
