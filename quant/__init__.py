"""Model backends behind one protocol, GGUF reading, and the hardware planner."""
