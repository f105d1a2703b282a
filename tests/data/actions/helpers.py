def double(x):
    """Twice x."""
    return x * 2
