"""What PHI masking costs a large read: rows/s of one SELECT of N rows (default
1,000,000) direct to PostgreSQL, through the gateway for a role whose results are
not masked, and through the same gateway for a role whose results are (SSN keep-last,
e-mail keep-domain, date of birth NULL, name redacted), in one run; the ratios
masked/unmasked (the goal: at least 0.7), unmasked/direct and masked/direct.

    python bench/masking.py [--rows 1000000] [--rounds 3] [--detectors]

It needs PostgreSQL on 127.0.0.1:5432 with trust auth for ``postgres``. It creates
``signoff_bench_<hex>`` with a ``patients`` table of N generated rows, starts
``signoff gateway serve`` (SQLite state, a loopback OIDC issuer) as a separate
process, and reads the result with a raw protocol client that only counts bytes up
to the ReadyForQuery (a client that builds Python rows would be the bottleneck, not
the gateway). ``--detectors`` adds the value detectors on the free-text column to
the masked role's policy. The targets are rotated from round to round; the medians
are printed. Exits non-zero only when something failed to run; every process it
started is stopped and the database dropped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pgclient import RawClient  # noqa: E402

from runner.demo.issuer import OidcIssuer  # noqa: E402
from runner.gateway import wire  # noqa: E402

PG = ("127.0.0.1", 5432)
QUERY = "SELECT id, ssn, email, date_of_birth, first_name, note FROM patients"
READY = b"Z\x00\x00\x00\x05I"
ENV = {**os.environ, "PGSSLMODE": "disable"}
for _name in ("PGPASSWORD", "PGSERVICE", "PGOPTIONS", "PGDATABASE", "PGUSER", "PGHOST"):
    ENV.pop(_name, None)

CONFIG = """
[gateway]
state_url = "sqlite:///{state}"
[listen]
http = "127.0.0.1:{http}"
pg = "127.0.0.1:{pg}"
[[issuers]]
name = "bench"
issuer = "{issuer}"
[[databases]]
name = "bench"
host = "127.0.0.1"
port = 5432
dbname = "{dbname}"
user = "postgres"
sslmode = "disable"
[[access]]
database = "bench"
role = "plain"
issuer = "bench"
claims = {{ repository = "acme/plain" }}
[[access]]
database = "bench"
role = "masked"
issuer = "bench"
claims = {{ repository = "acme/masked" }}
[roles.plain]
[roles.masked]
[masking]
roles = ["masked"]
[[masking.rules]]
name = "ssn"
names = ["ssn"]
action = "keep_last"
[[masking.rules]]
name = "email"
names = ["email"]
action = "keep_domain"
[[masking.rules]]
name = "birth-date"
names = ["date_of_birth"]
[[masking.rules]]
name = "person-name"
names = ["first_name"]
{detectors}
"""
DETECTORS = """[[masking.rules]]
name = "values"
detect = ["ssn", "email", "phone"]
"""


class BenchError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def psql(dbname: str, sql: str) -> None:
    done = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG[0], "-U", "postgres", "-d", dbname],
        input=sql,
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"psql: {done.stderr.strip()}")


@contextlib.contextmanager
def database(rows: int) -> Iterator[str]:
    name = f"signoff_bench_{secrets.token_hex(6)}"
    psql("postgres", f"CREATE DATABASE {name}")
    try:
        print(f"{rows:,} patients into {name} ...", flush=True)
        psql(
            name,
            "CREATE TABLE patients (id bigint PRIMARY KEY, ssn text, email text, "
            "date_of_birth date, first_name text, note text);"
            "INSERT INTO patients SELECT g, "
            "lpad((g % 900 + 100)::text, 3, '0') || '-' || lpad((g % 90 + 10)::text, 2, '0') "
            "|| '-' || lpad((g % 9000 + 1000)::text, 4, '0'), "
            "'patient' || g || '@example.org', date '1950-01-01' + (g % 20000), "
            "'Name' || g, 'seen on visit ' || (g % 17) || ', all fine' "
            f"FROM generate_series(1, {rows}) g; VACUUM ANALYZE patients;",
        )
        yield name
    finally:
        with contextlib.suppress(BenchError):
            psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def gateway(
    tmp: Path, dbname: str, issuer: OidcIssuer, detectors: bool
) -> Iterator[tuple[str, int]]:
    http, pg = free_port(), free_port()
    config = tmp / "gateway.toml"
    config.write_text(
        CONFIG.format(
            state=tmp / "gateway.db",
            http=http,
            pg=pg,
            issuer=issuer.issuer,
            dbname=dbname,
            detectors=DETECTORS if detectors else "",
        )
    )
    log = (tmp / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "gateway", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise BenchError(f"the gateway exited {proc.returncode}: see {tmp / 'gateway.log'}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=1),
            ):
                break
            if time.monotonic() > deadline:
                raise BenchError("the gateway did not answer /healthz in 60s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{http}", pg
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def session(http: str, issuer: OidcIssuer, repository: str) -> tuple[str, str]:
    token = issuer.token(repository=repository, ref="refs/heads/main")
    request = urllib.request.Request(
        f"{http}/v1/sessions",
        data=json.dumps({"token": token, "database": "bench"}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data = json.loads(response.read())
    return str(data["session_id"]), str(data["secret"])


def read_all(client: RawClient) -> int:
    """Send the query; read until the ReadyForQuery after it; the bytes received."""
    sock = client.sock
    sock.sendall(wire.query(QUERY))
    total = 0
    tail = b""
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise BenchError("the connection closed mid-result")
        total += len(chunk)
        tail = (tail + chunk)[-len(READY) :]
        if tail == READY:
            return total


def measure(port: int, user: str, password: str, dbname: str) -> tuple[float, int]:
    client = RawClient(port)
    try:
        client.sock.settimeout(600)
        got = client.startup(user, dbname, password)
        if got[-1][0] != "Z":
            raise BenchError(f"login failed: {got[-1]}")
        time.sleep(0.1)
        start = time.perf_counter()
        size = read_all(client)
        return time.perf_counter() - start, size
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--detectors", action="store_true")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"direct": [], "unmasked": [], "masked": []}
    sizes: dict[str, int] = {}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="signoff-bench-masking-") as tmp,
            database(args.rows) as dbname,
            OidcIssuer() as issuer,
            gateway(Path(tmp), dbname, issuer, args.detectors) as (http, pg_port),
        ):
            order = ["direct", "unmasked", "masked"]
            for round_ in range(args.rounds):
                for target in order:
                    if target == "direct":
                        seconds, size = measure(PG[1], "postgres", "", dbname)
                    else:
                        repository = "acme/masked" if target == "masked" else "acme/plain"
                        user, secret = session(http, issuer, repository)
                        seconds, size = measure(pg_port, user, secret, "bench")
                    times[target].append(seconds)
                    sizes[target] = size
                    print(
                        f"round {round_ + 1} {target:>8}: {seconds:7.3f} s  "
                        f"{args.rows / seconds:12,.0f} rows/s  {size / seconds / 1e6:7.1f} MB/s",
                        flush=True,
                    )
                order = order[1:] + order[:1]
    except (BenchError, OSError) as error:
        print(f"bench/masking.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    median = {t: statistics.median(v) for t, v in times.items()}
    rate = {t: args.rows / s for t, s in median.items()}
    print()
    for target in ("direct", "unmasked", "masked"):
        print(f"{target:>8}: {rate[target]:12,.0f} rows/s (median of {args.rounds})")
    print(f"masked / unmasked (gateway): {rate['masked'] / rate['unmasked']:.2f}  (goal >= 0.70)")
    print(f"unmasked / direct:           {rate['unmasked'] / rate['direct']:.2f}")
    print(f"masked / direct:             {rate['masked'] / rate['direct']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
