"""Codeflow's language server: LSP handlers, settings and the command line."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("codeflow-lsp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
