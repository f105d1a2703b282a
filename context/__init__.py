"""Cross-file context: watch, parse, index, rank and pack prompts. No LSP imports."""
