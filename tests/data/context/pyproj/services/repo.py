from models import User


class UserRepo:
    def find(self, email: str) -> User | None:
        return User.find_by_email(email)
