def slugify(value: str) -> str:
    """Lowercase, dashes for spaces."""
    return value.lower().replace(" ", "-")
