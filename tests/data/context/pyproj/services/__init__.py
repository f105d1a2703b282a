from .auth import AuthService

__all__ = ["AuthService"]
