"""Database models for the sample app."""

from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import check_password_hash, generate_password_hash

db = SQLAlchemy()


class User(db.Model):
    """A registered user, identified by email."""

    __tablename__ = "users"

    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(255), unique=True, nullable=False)
    name = db.Column(db.String(120), nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    is_active = db.Column(db.Boolean, default=True)

    def set_password(self, password: str) -> None:
        """Store a salted hash of `password`."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """Whether `password` matches the stored hash."""
        return check_password_hash(self.password_hash, password)

    @classmethod
    def find_by_email(cls, email: str) -> "User | None":
        """The user with this email, or None."""
        return cls.query.filter_by(email=email.lower()).first()

    def to_dict(self) -> dict:
        """The public fields, for JSON responses."""
        return {"id": self.id, "email": self.email, "name": self.name}
