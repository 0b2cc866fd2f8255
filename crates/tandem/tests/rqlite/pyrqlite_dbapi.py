"""Drives Tandem's rqlite-compatible API with pyrqlite, rqlite's DB-API 2.0 client from PyPI,
unchanged: tables, inserts with positional and named parameters, selects, transactions and
errors; then, once the test has killed the active server, the same client goes on against
another node.

Usage: python3 pyrqlite_dbapi.py SECRET HOST:PORT
Prints "ready" after the first part and reads the address of a surviving node from standard
input; prints "done" at the end. Any failed check ends it with a traceback and exit status 1.
"""

import sys

import pyrqlite.dbapi2 as dbapi2

from retry import until_served


def connect(address, password):
    host, port = address.rsplit(":", 1)
    return dbapi2.connect(host=host, port=int(port), user="app", password=password, timeout=10)


def accounts(cursor):
    cursor.execute("SELECT id, owner, balance FROM accounts ORDER BY id")
    return [tuple(row) for row in cursor.fetchall()]


def refused(cursor, sql, words):
    """Runs a statement that must fail, and checks the error names the problem."""
    try:
        cursor.execute(sql)
    except dbapi2.Error as error:
        assert words in str(error), f"{sql!r}: {error}"
        return
    raise AssertionError(f"{sql!r} was not refused")


def main():
    secret, first = sys.argv[1], sys.argv[2]
    cursor = connect(first, secret).cursor()

    cursor.execute(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL)"
    )
    cursor.execute("INSERT INTO accounts (owner, balance) VALUES (?, ?)", ("ada", 100))
    assert cursor.lastrowid == 1, cursor.lastrowid
    cursor.execute(
        "INSERT INTO accounts (owner, balance) VALUES (:owner, :balance)",
        {"owner": "grace", "balance": 50},
    )
    assert cursor.lastrowid == 2, cursor.lastrowid
    assert accounts(cursor) == [(1, "ada", 100), (2, "grace", 50)], accounts(cursor)

    # executemany is one /db/execute?transaction request.
    cursor.executemany(
        "INSERT INTO accounts (owner, balance) VALUES (?, ?)", [("alan", 10), ("edsger", 20)]
    )
    assert cursor.rowcount == 2, cursor.rowcount
    # The second row breaks NOT NULL: the transaction leaves no row at all.
    cursor.executemany(
        "INSERT INTO accounts (owner, balance) VALUES (?, ?)", [("barbara", 5), (None, 6)]
    )
    assert [row[1] for row in accounts(cursor)] == ["ada", "grace", "alan", "edsger"]

    cursor.execute("UPDATE accounts SET balance = balance - ? WHERE owner = ?", (30, "ada"))
    assert cursor.rowcount == 1, cursor.rowcount
    cursor.execute("SELECT sum(balance) AS total, count(*) FROM accounts")
    assert tuple(cursor.fetchone()) == (150, 4)

    refused(cursor, "INSERT INTO accounts VALUE (1)", "syntax error")
    refused(cursor, "SELECT * FROM missing", "no such table: missing")
    refused(cursor, "INSERT INTO accounts (owner, balance) VALUES ('x', random())", "random()")

    stranger = connect(first, "not-the-secret").cursor()
    refused(stranger, "SELECT 1", "401")

    print("ready", flush=True)
    survivor = sys.stdin.readline().strip()
    cursor = connect(survivor, secret).cursor()
    # pyrqlite raises its Error for a 503, and OSError when it cannot connect.
    failures = (dbapi2.Error, OSError)
    rows = until_served("reading after the kill", lambda: accounts(cursor), failures)
    assert [row[1] for row in rows] == ["ada", "grace", "alan", "edsger"], rows
    # An attempt whose answer was lost (503 outcome_unknown) may have been applied: the insert
    # adds the row only once.
    until_served(
        "writing after the kill",
        lambda: cursor.execute(
            "INSERT INTO accounts (owner, balance) SELECT ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE owner = ?)",
            ("barbara", 5, "barbara"),
        ),
        failures,
    )
    assert accounts(cursor)[-1] == (5, "barbara", 5), accounts(cursor)
    print("done", flush=True)


if __name__ == "__main__":
    main()
