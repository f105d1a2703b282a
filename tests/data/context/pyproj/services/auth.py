from ..models import User
from .repo import UserRepo


class Session:
    token: str = ""

    def revoke(self) -> None:
        self.token = ""


class AuthService:
    def __init__(self, repo: UserRepo) -> None:
        self.repo = repo

    def login(self, email: str, password: str) -> Session | None:
        user = self.repo.find(email)
        if user is None or not user.check_password(password):
            return None
        return Session()
