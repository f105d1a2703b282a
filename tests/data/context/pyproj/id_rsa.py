PRIVATE_KEY = "not a real key but never in context"
def rsa_helper():
    return PRIVATE_KEY
