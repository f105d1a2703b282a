def secret_helper():
    return "never in context (user secret glob)"
