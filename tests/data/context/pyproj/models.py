"""Database models."""

from db import db


class User(db.Model):
    """A registered user."""

    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(120), unique=True)
    password_hash = db.Column(db.String(128))

    def check_password(self, password: str) -> bool:
        """Whether the password matches."""
        return hash(password) == self.password_hash

    @classmethod
    def find_by_email(cls, email: str) -> "User | None":
        return cls.query.filter_by(email=email).first()


class Account:
    def __init__(self, owner: User) -> None:
        self.owner = owner
        self.balance = Money(0)

    @property
    def label(self) -> str:
        return self.owner.email


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def add(self, other: "Money") -> "Money":
        return Money(self.cents + other.cents)
