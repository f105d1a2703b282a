class _Model:
    def save(self) -> None:
        """Persist the row."""


class Database:
    Model = _Model
    Column = object
    Integer = int
    String = str

    def commit(self) -> None:
        pass


db = Database()
