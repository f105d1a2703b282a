"""Shared fixtures: tiny GGUF models written once per session, and the sample workspace."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fault_server import FaultServer  # noqa: E402
from gguf_factory import CHATML, write_tiny_gguf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "flask_app"
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random-weight GGUFs in every prompt-format variant."""
    out = tmp_path_factory.mktemp("models")
    write_tiny_gguf(out / "base.gguf")
    write_tiny_gguf(out / "fim.gguf", fim=True)
    write_tiny_gguf(out / "fim_vocab.gguf", fim="vocab")
    write_tiny_gguf(out / "chat.gguf", chat_template=CHATML)
    # Only printable pieces in the output: what is shown is exactly what was generated.
    write_tiny_gguf(out / "printable.gguf", byte_output=False)
    # Never ends a line or the text: generation runs until it is stopped.
    write_tiny_gguf(out / "endless.gguf", newline=False, eos=False, n_embd=256, n_layer=4, n_ff=512)
    return out


@pytest.fixture(scope="session")
def worker_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model the worker tests drive: the smallest GGUF, printable pieces only."""
    # No newline and no end-of-text: a generation only stops at max_tokens or on cancel.
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "tiny.gguf", newline=False, eos=False, byte_output=False)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled Flask sample (read-only: copy it before changing files)."""
    return SAMPLE


@pytest.fixture
def write_workspace(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    """Makes the workspace `tmp_path/ws` holding the files given (name -> text); returns its root."""

    def write(files: dict[str, str]) -> Path:
        root = tmp_path / "ws"
        root.mkdir()
        for name, text in files.items():
            (root / name).write_text(text)
        return root

    return write


@pytest.fixture
def copy_data_workspace(tmp_path: Path) -> Callable[[str], Path]:
    """Copies the fixture workspace `tests/data/<name>` to `tmp_path/ws`; returns the copy."""

    def copy(name: str) -> Path:
        root = tmp_path / "ws"
        shutil.copytree(DATA / name, root)
        return root

    return copy


@pytest.fixture
def fault() -> Iterator[FaultServer]:
    """A fake OpenAI-compatible server on 127.0.0.1 that records every request (tests/fault_server.py)."""
    server = FaultServer()
    yield server
    server.close()
