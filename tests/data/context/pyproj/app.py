from models import Account, User
from services import AuthService
from services.repo import UserRepo
from pkglib.text import slugify
import db as database


class App:
    def __init__(self) -> None:
        self.auth = AuthService(UserRepo())
        self.name = slugify("My App")

    def login(self, email: str, password: str):
        session = self.auth.login(email, password)
        user = User.find_by_email(email)
        account = Account(user)
        total = account.balance.add(account.balance)
        database.db.commit()
        return session, total
