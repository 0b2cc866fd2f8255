"""Drives Tandem's rqlite-compatible API with SQLAlchemy's ORM through the sqlalchemy-rqlite
dialect (and pyrqlite under it), unchanged: create_all, insert, query, update and delete on a
small model; then, once the test has killed the active server, the same model goes on against
another node.

Usage: python3 sqlalchemy_orm.py SECRET HOST:PORT
Prints "ready" after the first part and reads the address of a surviving node from standard
input; prints "done" at the end. Any failed check ends it with a traceback and exit status 1.
"""

import sys

import sqlalchemy as sa
from sqlalchemy import orm

from retry import until_served


class Base(orm.DeclarativeBase):
    pass


class Book(Base):
    __tablename__ = "books"
    id = sa.Column(sa.Integer, primary_key=True)
    title = sa.Column(sa.String(200), nullable=False)
    pages = sa.Column(sa.Integer, nullable=False)
    price = sa.Column(sa.Float)


def engine_for(address, secret):
    return sa.create_engine(f"rqlite+pyrqlite://app:{secret}@{address}/")


def titles(session):
    return [book.title for book in session.scalars(sa.select(Book).order_by(Book.id))]


def main():
    secret, first = sys.argv[1], sys.argv[2]
    engine = engine_for(first, secret)
    Base.metadata.create_all(engine)
    assert sa.inspect(engine).has_table("books")
    # A second create_all finds the table and leaves it alone.
    Base.metadata.create_all(engine)

    with orm.Session(engine) as session:
        session.add(Book(title="Dune", pages=412, price=9.5))
        session.add_all([Book(title="Emma", pages=474), Book(title="Ulysses", pages=730)])
        session.commit()

    with orm.Session(engine) as session:
        assert titles(session) == ["Dune", "Emma", "Ulysses"], titles(session)
        dune = session.scalars(sa.select(Book).where(Book.title == "Dune")).one()
        assert (dune.id, dune.pages, dune.price) == (1, 412, 9.5)
        long_books = session.scalars(sa.select(Book).where(Book.pages > 450)).all()
        assert sorted(b.title for b in long_books) == ["Emma", "Ulysses"]

        dune.pages = 500
        session.commit()
        assert session.get(Book, 1).pages == 500

        session.delete(session.get(Book, 2))
        session.commit()
        assert titles(session) == ["Dune", "Ulysses"], titles(session)
        count = session.scalar(sa.select(sa.func.count()).select_from(Book))
        assert count == 2, count

    print("ready", flush=True)
    survivor = sys.stdin.readline().strip()
    engine = engine_for(survivor, secret)

    def read():
        with orm.Session(engine) as session:
            return titles(session)

    # SQLAlchemy wraps pyrqlite's errors in its DBAPIError.
    failures = sa.exc.DBAPIError
    assert until_served("reading after the kill", read, failures) == ["Dune", "Ulysses"]

    def write():
        # An attempt whose answer was lost (503 outcome_unknown) may have been applied: look
        # before adding again.
        with orm.Session(engine) as session:
            known = sa.select(Book).where(Book.title == "Middlemarch")
            if session.scalars(known).first() is None:
                session.add(Book(title="Middlemarch", pages=880))
            session.get(Book, 3).price = 12.0
            session.commit()

    until_served("writing after the kill", write, failures)
    with orm.Session(engine) as session:
        assert titles(session) == ["Dune", "Ulysses", "Middlemarch"], titles(session)
        assert session.get(Book, 3).price == 12.0
    print("done", flush=True)


if __name__ == "__main__":
    main()
