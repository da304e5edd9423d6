"""SO517: CREATE / ALTER ROLE with a password or LOGIN: a way in, written into a migration."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO517",
    "role-login-credentials",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="CREATE / ALTER ROLE ... PASSWORD or LOGIN: a login whose secret the repository holds.",
    rationale="""
        A password in a migration is known to everyone who can read the
        repository, its history, CI logs and the plan comment: CREATE ROLE ...
        LOGIN PASSWORD '...' creates an account anyone of them can use, and
        ALTER ROLE app PASSWORD '...' takes over an existing one (the
        application's role, with every grant it holds). ALTER ROLE ... LOGIN
        turns a group role into an account. Reported whether the password is
        clear text or a SCRAM verifier (the verifier is as good as the password
        for an offline guess). PASSWORD NULL and NOLOGIN take access away and
        are not reported.
    """,
    safer="""
        Create login roles and set their passwords outside migrations, through
        the operators' secret management; migrations create NOLOGIN group roles
        and grant to them.
    """,
    triggers=[
        "CREATE ROLE backdoor LOGIN PASSWORD 'hunter2'",
        "ALTER ROLE app WITH PASSWORD 'known'",
        "ALTER USER app ENCRYPTED PASSWORD 'SCRAM-SHA-256$4096:abc'",
        "ALTER ROLE reporting LOGIN",
        "CREATE USER auditor",
    ],
    passes=[
        "CREATE ROLE reporting NOLOGIN",
        "CREATE ROLE clinicians",
        "ALTER ROLE app PASSWORD NULL",
        "ALTER ROLE app NOLOGIN",
        "ALTER ROLE app SET statement_timeout = '5s'",
    ],
    kinds=("create_role", "alter_role"),
)
def role_credentials(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind not in ("create_role", "alter_role") or view.shape is None:
        return
    ws = words(view.raw.tokens)
    texts = [w.text for w in ws]
    name = view.shape.relation or "?"
    # CREATE USER is CREATE ROLE ... LOGIN.
    login = texts[:2] == ["CREATE", "USER"]
    for i, word in enumerate(ws[3:], start=3):
        if word.is_string:
            continue
        if word.text in ("SET", "RESET", "RENAME", "IN") and texts[0] == "ALTER":
            break
        if word.text == "PASSWORD" and i + 1 < len(ws) and ws[i + 1].text != "NULL":
            yield f"sets a password for role {name} in the migration's text"
            return
        login = login or word.text == "LOGIN"
        if word.text == "NOLOGIN":
            login = False
    if login:
        yield f"lets role {name} log in"
