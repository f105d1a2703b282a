"""The whole language server: the server object with every feature registered on it.

`server.py` holds the server and its document and completion handlers, `actions.py` the code
actions and hovers; importing both here (and nowhere else) registers them without an import cycle.
"""

from __future__ import annotations

from codeflow.lsp_server import actions
from codeflow.lsp_server.server import server

__all__ = ["actions", "server"]
