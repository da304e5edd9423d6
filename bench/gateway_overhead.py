"""Gateway overhead: pgbench direct, through pgbouncer and through the signoff gateway.

One command, one scratch database, every target in the same run::

    python bench/gateway_overhead.py [--duration 10] [--clients 8] [--scale 10]
                                     [--jobs 2] [--rounds 1] [--profile]
                                     [--workload S|N] [--protocol simple|extended]
                                     [--rate TPS] [--python-relay]

1. creates ``signoff_bench_<hex>`` on 127.0.0.1:5432 (user postgres, trust) and
   ``pgbench -i -s SCALE`` it; the database is dropped at the end, always;
2. starts, as separate processes, pgbouncer (if installed; as an unprivileged
   user when run as root, since pgbouncer refuses root; session pooling, so one
   server connection per client like the gateway) and the gateway
   (``signoff gateway serve --config <tmp>/gateway.toml``, SQLite state in the
   temp directory, a loopback OIDC issuer in this process), waits for /healthz
   and exchanges a token for a session (a fresh session for every gateway run);
   with ``--python-relay``, a second gateway ("relay") started the same way with
   ``SIGNOFF_FAST_LANE=0``, in its own subdirectory (own config, state and log);
3. runs ``pgbench -c CLIENTS -j JOBS -T DURATION -n`` for the workloads ``-S``
   (select-only) and ``-N`` (simple write mix: UPDATE/SELECT/INSERT in
   BEGIN/END), each with ``-M simple`` and ``-M extended``, against direct,
   pgbouncer, gateway (and relay), the target order rotated from one cell to the
   next. Before every run the tables pgbench would vacuum are vacuumed and
   pgbench_history is truncated directly on the server, so every target starts
   from the same state and ``-n`` (no vacuum step) is used for every target;
4. prints TPS (without initial connection time) and average latency per target
   and the ratios gateway/direct, gateway/pgbouncer and pgbouncer/direct (and
   lane/relay, gateway over relay: what the C fast lane buys), plus the CPU each
   proxy process used during its runs (% of one core, microseconds per
   transaction) and how busy the whole machine was;
5. stops the gateway (and the relay), runs ``signoff gateway audit verify`` on
   each one's state and prints the number of audit entries, and each gateway's own
   totals (entries per durable write of the journal);
6. with ``--profile``, two extra ``-S -M simple`` gateway runs under
   ``py-spy record --format raw --nonblocking``, one sampling every thread and one
   with ``--gil`` (only the thread holding the GIL), each summarised by component
   (audit log, analysis + policy, authentication, relay, event loop), by function
   (self and inclusive), by line and by innermost ``runner/`` frame; the collapsed
   stacks are kept in files (speedscope or flamegraph.pl read them).
   ``--profile-workload N``, ``--profile-protocol extended``, ``--profile-native``
   (C frames too) and ``--profile-only`` (no table) vary it.

Exits non-zero only when something failed to run (a process did not start, a
pgbench run errored or aborted clients, the audit chain does not verify), never
because of the numbers. Every process it started is stopped on exit, Ctrl-C or
error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import linecache
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
GATEWAY_DB = "bench"  # the database's name in gateway.toml (and pgbouncer's [databases])
WORKLOADS = (("-S", "select-only"), ("-N", "simple-update"))
PROTOCOLS = ("simple", "extended")
TARGETS = ("direct", "pgbouncer", "gateway", "relay")
BASE_ENV = {**os.environ, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
for _name in ("PGPASSWORD", "PGSERVICE", "PGOPTIONS", "PGDATABASE", "PGUSER", "PGHOST"):
    BASE_ENV.pop(_name, None)


class BenchError(Exception):
    """Something did not run; the message says what."""


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((PG_HOST, 0))
        return int(sock.getsockname()[1])


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        env=env or BASE_ENV,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(cmd)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
        )
    return done.stdout


def psql(dbname: str, sql: str, *, port: int = PG_PORT, user: str = PG_USER) -> str:
    return run(
        [
            "psql",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            PG_HOST,
            "-p",
            str(port),
            "-U",
            user,
            "-d",
            dbname,
            "-c",
            sql,
        ]
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc; 0 when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


@dataclass
class Proc:
    """A started child process and how to stop it."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop in {timeout:.0f}s after SIGTERM; killing it")
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def wait_for_port(proc: Proc, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited {proc.popen.returncode}:\n{tail(proc.log)}")
        with contextlib.suppress(OSError), socket.create_connection((PG_HOST, port), 0.5):
            return
        time.sleep(0.1)
    raise BenchError(f"{proc.name} did not listen on {PG_HOST}:{port} in {timeout:.0f}s")


# ---------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    user: str
    dbname: str
    pid: int | None = None  # the proxy process, for CPU accounting and profiling
    password: str | None = None

    def env(self) -> dict[str, str]:
        env = dict(BASE_ENV)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env


def start_pgbouncer(tmp: Path, dbname: str, clients: int) -> tuple[Proc, Target] | None:
    binary = "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None
    binary = binary or shutil.which("pgbouncer")
    if binary is None:
        return None
    port = free_port()
    home = tmp / "pgbouncer"
    home.mkdir(mode=0o755)
    home.chmod(0o755)  # the unprivileged user reads its config from here
    ini = home / "pgbouncer.ini"
    ini.write_text(
        f"""[databases]
{GATEWAY_DB} = host={PG_HOST} port={PG_PORT} dbname={dbname} user={PG_USER}

[pgbouncer]
listen_addr = {PG_HOST}
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = session
max_client_conn = {clients + 20}
default_pool_size = {clients + 5}
max_db_connections = 0
ignore_startup_parameters = extra_float_digits
server_tls_sslmode = disable
client_tls_sslmode = disable
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
stats_period = 3600
"""
    )
    ini.chmod(0o644)
    kwargs: dict[str, Any] = {}
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        account = pwd.getpwnam("nobody")
        kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    log = tmp / "pgbouncer.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [binary, str(ini)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches this script, which stops it
            cwd=home,
            **kwargs,
        )
    proc = Proc("pgbouncer", popen, log)
    wait_for_port(proc, port)
    return proc, Target("pgbouncer", port, PG_USER, GATEWAY_DB, pid=popen.pid)


GATEWAY_TOML = """\
[gateway]
audience = "signoff-gateway"
state_url = "sqlite:///{state}"
session_ttl = "1h"
max_session_ttl = "1h"

[listen]
http = "{host}:{http_port}"
pg = "{host}:{pg_port}"

[[issuers]]
name = "bench"
issuer = "{issuer}"

[[databases]]
name = "{name}"
host = "{host}"
port = {upstream_port}
dbname = "{dbname}"
user = "{user}"
sslmode = "disable"

[[access]]
database = "{name}"
role = "bench"
issuer = "bench"
claims = {{ repository = "acme/ehr-api", ref = "refs/heads/main" }}

# As in production: reads and ordinary writes are allowed anyway; destructive and
# unanalysable statements need approval.
[roles.bench]
destructive = "needs-approval"
unanalysable = "needs-approval"
locking = "allow"
incompatible = "allow"
hygiene = "allow"
"""


@dataclass
class Gateway:
    proc: Proc
    config: Path
    http: str
    pg_port: int
    issuer: Any  # tests/oidc_issuer.py's OidcIssuer
    name: str = "gateway"  # the target (column) its sessions are: "gateway" or "relay"

    def healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise BenchError(
                    f"{self.name} exited {self.proc.popen.returncode}:\n{tail(self.proc.log)}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.http}/healthz", timeout=1) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise BenchError(
            f"{self.name} /healthz did not answer in {timeout:.0f}s:\n{tail(self.proc.log)}"
        )

    def session(self) -> Target:
        """Exchange a fresh token for a session: the pgbench target logging in as it."""
        body = json.dumps({"token": self.issuer.token(), "database": GATEWAY_DB}).encode()
        request = urllib.request.Request(
            f"{self.http}/v1/sessions",
            data=body,
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise BenchError(
                f"token exchange refused: {error.code} {error.read().decode(errors='replace')}"
            ) from None
        pg = data["pg"]
        return Target(
            self.name,
            int(pg["port"]),
            pg["user"],
            pg["dbname"],
            pid=self.proc.popen.pid,
            password=data["secret"],
        )


def start_gateway(
    tmp: Path,
    dbname: str,
    issuer: Any,
    *,
    name: str = "gateway",
    extra_env: dict[str, str] | None = None,
) -> Gateway:
    """Start ``signoff gateway serve`` with its config, state and log in ``tmp`` (a
    directory of its own: two gateways must not share a state db or a log)."""
    http_port, pg_port = free_port(), free_port()
    while pg_port == http_port:
        pg_port = free_port()
    config = tmp / "gateway.toml"
    config.write_text(
        GATEWAY_TOML.format(
            state=tmp / "gateway.db",
            host=PG_HOST,
            http_port=http_port,
            pg_port=pg_port,
            issuer=issuer.issuer,
            name=GATEWAY_DB,
            upstream_port=PG_PORT,
            dbname=dbname,
            user=PG_USER,
        )
    )
    signoff = Path(sys.executable).with_name("signoff")
    command = [str(signoff)] if signoff.exists() else [sys.executable, "-m", "runner.cli"]
    # Snapshot the sources the gateway loads, so a profile's line numbers are shown
    # against the code that ran even if someone edits a file during the benchmark.
    for source in sorted((ROOT / "runner").rglob("*.py")):
        linecache.getlines(str(source))
    log = tmp / "gateway.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [*command, "gateway", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=tmp,
            env={**BASE_ENV, **(extra_env or {})},
        )
    gateway = Gateway(
        Proc(name, popen, log), config, f"http://{PG_HOST}:{http_port}", pg_port, issuer, name
    )
    gateway.healthy()
    wait_for_port(gateway.proc, pg_port)
    return gateway


# ---------------------------------------------------------------------------
# pgbench
# ---------------------------------------------------------------------------

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)


@dataclass
class Result:
    target: str
    workload: str
    protocol: str
    tps: float | None = None
    latency_ms: float | None = None
    transactions: int = 0
    cpu_pct: float | None = None  # the proxy process's CPU over the run, % of one core
    cpu_us_per_tx: float | None = None  # ... and per pgbench transaction
    host_busy_pct: float | None = None  # the whole machine, % of all its cores
    error: str | None = None


def reset_tables(dbname: str) -> None:
    """What pgbench's own vacuum step does, done directly so every target starts alike."""
    psql(dbname, "TRUNCATE pgbench_history")
    psql(dbname, "VACUUM pgbench_branches, pgbench_tellers, pgbench_history")


def pgbench_command(
    target: Target, workload: str, protocol: str, args: argparse.Namespace
) -> list[str]:
    return [
        "pgbench",
        "-h",
        PG_HOST,
        "-p",
        str(target.port),
        "-U",
        target.user,
        "-c",
        str(args.clients),
        "-j",
        str(args.jobs),
        "-T",
        str(args.duration),
        "-M",
        protocol,
        workload,
        "-n",
        *(["-R", str(args.rate)] if args.rate else []),
        target.dbname,
    ]


def parse_pgbench(result: Result, output: str, returncode: int) -> Result:
    tps, latency = _TPS.search(output), _LATENCY.search(output)
    failed, processed = _FAILED.search(output), _PROCESSED.search(output)
    if tps:
        result.tps = float(tps.group(1))
    if latency:
        result.latency_ms = float(latency.group(1))
    if processed:
        result.transactions = int(processed.group(1))
    problems = []
    if returncode != 0:
        problems.append(f"pgbench exited {returncode}")
    if failed and int(failed.group(1)):
        problems.append(f"{failed.group(1)} failed transactions")
    if tps is None:
        problems.append("no tps line")
    if problems:
        lines = [line for line in output.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "abort" in line.lower()]
        result.error = "; ".join(problems) + ": " + " | ".join((errors or lines)[-4:])
    return result


def run_pgbench(
    target: Target, workload: str, protocol: str, args: argparse.Namespace, dbname: str
) -> Result:
    reset_tables(dbname)
    result = Result(target.name, workload, protocol)
    cpu_before = cpu_seconds(target.pid) if target.pid else 0.0
    host_before = host_cpu()
    start = time.monotonic()
    try:
        done = subprocess.run(
            pgbench_command(target, workload, protocol, args),
            capture_output=True,
            text=True,
            env=target.env(),
            timeout=args.duration + 120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        result.error = "pgbench did not finish in time"
        return result
    wall = time.monotonic() - start
    host_after = host_cpu()
    if host_after[1] > host_before[1]:
        busy = (host_after[0] - host_before[0]) / (host_after[1] - host_before[1])
        result.host_busy_pct = 100 * busy
    if target.pid:
        used = cpu_seconds(target.pid) - cpu_before
        result.cpu_pct = 100 * used / wall
    parse_pgbench(result, done.stdout + done.stderr, done.returncode)
    if target.pid and result.transactions:
        result.cpu_us_per_tx = 1e6 * used / result.transactions
    return result


# ---------------------------------------------------------------------------
# py-spy
# ---------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    for marker in ("/site-packages/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    lib = re.search(r"/lib/python3\.\d+/(.*)", path)
    return lib.group(1) if lib else path


def _frame_name(frame: str) -> tuple[str, str]:
    """('function (file)', file) with the line number dropped."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    file = _short(match.group("file"))
    return f"{match.group('func')} ({file})", file


# A sample whose stack holds one of these is a thread with nothing to do (py-spy's own
# idle filter misses some, notably with --nonblocking and --native): counted apart.
_IDLE = re.compile(
    r"^(Condition\.wait|Event\.wait|Thread\.join|Queue\.get|_wait_for_tstate_lock"
    r"|epoll_wait|epoll_pwait|PyThread_acquire_lock_timed|_queue_SimpleQueue_get(_impl)?)$"
)
# With --native: a thread blocked in these outside a Python-level lock is waiting for
# the GIL (take_gil is a condition variable; uvloop callbacks re-take the GIL).
_GIL_WAIT = re.compile(
    r"^(take_gil|PyEval_RestoreThread|PyGILState_Ensure|pthread_cond_timedwait"
    r"|pthread_cond_wait|pthread_mutex_lock|__lll_lock_wait)$"
)
_UNRESOLVED = re.compile(r"^0x[0-9a-fA-F]+ \(")

# Where a working sample's time goes, by the first rule (in this order) that any frame
# on its stack matches: (component, files, function-name prefixes).
_COMPONENTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "audit log (entries, canonical JSON, hash chain, SQLite, writer hand-off)",
        ("runner/audit/", "runner/gateway/store/"),
        ("GatewayService.record_", "GatewayService._statement_data", "GatewayService._event"),
    ),
    (
        "analysis + policy (split, tokenize, fingerprint, rules, decide)",
        ("runner/plan/", "runner/gateway/policy", "sqlglot"),
        ("GatewayService.decide", "GatewayService._analysis"),
    ),
    (
        "authentication (SCRAM, session lookup, upstream login)",
        ("runner/gateway/upstream.py", "runner/gateway/proxy/auth.py"),
        (
            "ScramExchange",
            "ClientConnection._startup",
            "ScramVerifier",
            "GatewayService.session",
        ),
    ),
    (
        "relay (proxy/wire message handling)",
        ("runner/gateway/proxy/", "runner/gateway/wire.py"),
        (),
    ),
    ("HTTP API", ("runner/gateway/app.py", "fastapi", "starlette", "uvicorn"), ()),
)
_LOOP = "event loop / asyncio / uvloop and I/O (no signoff frame)"


def _component(named: Sequence[tuple[str, str]]) -> str:
    for component, files, functions in _COMPONENTS:
        for name, file in named:
            if file.startswith(files) or (functions and name.startswith(functions)):
                return component
    return _LOOP


def summarise_profile(raw: Path, seconds: float, rate: int, *, gil: bool, top: int = 15) -> str:
    """Collapsed stacks (``thread (tid): name;frame;frame;... count``, root first),
    summarised by function: self, inclusive, and innermost ``runner/`` frame."""
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    lines: Counter[tuple[str, str, int]] = Counter()
    components: Counter[str] = Counter()
    working: Counter[str] = Counter()
    idle: Counter[str] = Counter()
    gil_wait: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = "?"
        while frames and frames[0].startswith(("thread (", "process ")):
            head = frames.pop(0)
            if head.startswith("thread ("):
                thread = head.split(": ", 1)[1] if ": " in head else head
        unresolved_leaf = bool(frames) and bool(_UNRESOLVED.match(frames[-1]))
        named = [_frame_name(f) for f in frames if not _UNRESOLVED.match(f)]
        if not named:
            continue
        functions = {n.split(" (", 1)[0] for n, _ in named}
        if any(_IDLE.match(f) for f in functions):
            idle[thread] += count
            continue
        if _GIL_WAIT.match(named[-1][0].split(" (", 1)[0]):
            gil_wait[thread] += count
            continue
        total += count
        working[thread] += count
        leaf = named[-1][0] + (" > libc ?" if unresolved_leaf else "")
        self_samples[leaf] += count
        for name in {n for n, _ in named}:
            inclusive[name] += count
        innermost = next((n for n, f in reversed(named) if f.startswith("runner/")), None)
        ours[innermost or "(no runner/ frame) " + named[-1][0]] += count
        components[_component(named)] += count
        leaf_frame = _FRAME.match(frames[-1].strip())
        if leaf_frame and leaf_frame.group("line") and leaf_frame.group("file").endswith(".py"):
            lines[(named[-1][0], leaf_frame.group("file"), int(leaf_frame.group("line")))] += count
    if not total:
        return "  py-spy recorded no working samples"

    def table(title: str, counter: Counter[str]) -> list[str]:
        rows = [f"  {title}"]
        rows += [f"    {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(top)]
        return rows

    possible = seconds * rate

    def share(counter: Counter[str], name: str, what: str) -> str:
        return f", {100 * counter[name] / possible:.0f}% {what}" if counter[name] else ""

    threads = [
        f"{name}: {100 * n / possible:.0f}% "
        + ("holding the GIL" if gil else "working")
        + share(gil_wait, name, "waiting for the GIL")
        + share(idle, name, "idle")
        for name, n in working.most_common()
    ]
    if gil:
        head = (
            f"  GIL held {100 * total / possible:.0f}% of the time ({total} samples in "
            f"{seconds:.0f}s at {rate}/s; 100% = the process is bound to one core of Python)"
        )
    else:
        head = f"  {total} working samples in {seconds:.0f}s at {rate}/s (idle waits left out)"
    out = [
        head,
        "  per thread, share of wall time: " + "; ".join(threads),
        "  (percentages below are of those samples, all threads together)",
        *table("by component (first match: audit, analysis, auth, relay, loop):", components),
        *table("self (the function on top of the stack):", self_samples),
        *table("inclusive (the function anywhere on the stack):", inclusive),
        "  hottest Python lines (self; C callees such as socket writes count on the calling line):",
        *(
            f"    {100 * n / total:5.1f}%  {name.split(' (', 1)[0]} "
            f"{_short(file)}:{line}: {linecache.getline(file, line).strip()[:70]}"
            for (name, file, line), n in lines.most_common(10)
        ),
        *table("innermost runner/ frame (signoff code and everything it calls):", ours),
    ]
    return "\n".join(out)


def profile_gateway(
    gateway: Gateway, args: argparse.Namespace, dbname: str, out: Path, *, gil: bool
) -> tuple[Result, str]:
    """One pgbench run through the gateway with py-spy recording it: every thread's
    stacks (``gil=False``) or only the thread holding the GIL (``gil=True``)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    binary = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if binary is None:
        raise BenchError("--profile: py-spy is not installed (pip install py-spy)")
    target = gateway.session()
    reset_tables(dbname)
    rate = 100
    seconds = max(1, args.duration - 2)
    # --native (C frames: uvloop, sqlite3, libc) needs py-spy to pause the process for
    # each sample; otherwise sample without pausing (less perturbation).
    mode = ["--native"] if args.profile_native and not gil else ["--nonblocking"]
    if gil:
        mode.append("--gil")
    bench = subprocess.Popen(
        pgbench_command(target, args.profile_workload, args.profile_protocol, args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=target.env(),
    )
    try:
        time.sleep(1)  # past the connections: sample the steady state
        spy = subprocess.run(
            [
                binary,
                "record",
                "--pid",
                str(target.pid),
                "--duration",
                str(seconds),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--threads",
                "--full-filenames",
                *mode,
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
        output, _ = bench.communicate(timeout=args.duration + 120)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    result = parse_pgbench(
        Result("gateway", args.profile_workload, args.profile_protocol),
        output,
        bench.returncode,
    )
    if spy.returncode != 0 or not out.exists():
        raise BenchError(f"py-spy record failed ({spy.returncode}): {spy.stderr.strip()}")
    return result, summarise_profile(out, seconds, rate, gil=gil)


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def _median(results: list[Result]) -> Result | None:
    ok = [r for r in results if r.error is None and r.tps is not None]
    if not ok:
        return None
    ok.sort(key=lambda r: r.tps or 0.0)
    return ok[(len(ok) - 1) // 2]


def _ratio(a: Result | None, b: Result | None) -> str:
    if a is None or b is None or not a.tps or not b.tps:
        return "-"
    return f"{a.tps / b.tps:.2f}"


def print_table(results: list[Result], targets: Sequence[str], rounds: int) -> None:
    def cell(r: Result | None) -> str:
        if r is None or r.tps is None:
            return f"{'failed':>19}"
        return f"{r.tps:10.0f}{r.latency_ms or 0:9.3f}"

    top = " " * 27 + "".join(f"{name:>19}" for name in targets) + "   TPS ratios"
    header = f"{'workload':<17}{'protocol':<10}" + f"{'tps':>10}{'lat ms':>9}" * len(targets)
    header += f"{'gw/direct':>11}{'gw/pgb':>8}{'pgb/direct':>11}"
    relay = "relay" in targets  # --python-relay: what the C fast lane buys
    if relay:
        header += f"{'lane/relay':>11}"
    print(top)
    print(header)
    print("-" * len(header))
    for flag, label in WORKLOADS:
        for protocol in PROTOCOLS:
            if not any(r.workload == flag and r.protocol == protocol for r in results):
                continue  # not asked for (--workload / --protocol)
            picked = {
                name: _median(
                    [
                        r
                        for r in results
                        if r.target == name and r.workload == flag and r.protocol == protocol
                    ]
                )
                for name in targets
            }
            line = f"{flag + ' ' + label:<17}{protocol:<10}"
            line += "".join(cell(picked[name]) for name in targets)
            line += f"{_ratio(picked.get('gateway'), picked.get('direct')):>11}"
            line += f"{_ratio(picked.get('gateway'), picked.get('pgbouncer')):>8}"
            line += f"{_ratio(picked.get('pgbouncer'), picked.get('direct')):>11}"
            if relay:
                line += f"{_ratio(picked.get('gateway'), picked.get('relay')):>11}"
            print(line)
    if rounds > 1:
        print(f"(median of {rounds} rounds by TPS; latency of that run)")
    print(
        "\nCPU during each run: the proxy process (% of one core, CPU microseconds per "
        "pgbench transaction)\nand the whole machine (% of all cores busy: near 100 means "
        "the box, not the target, is the limit)"
    )
    for flag, label in WORKLOADS:
        for protocol in PROTOCOLS:
            if not any(r.workload == flag and r.protocol == protocol for r in results):
                continue  # not asked for (--workload / --protocol)
            parts = []
            for name in targets:
                run_ = _median(
                    [
                        r
                        for r in results
                        if r.target == name and r.workload == flag and r.protocol == protocol
                    ]
                )
                if run_ is None:
                    continue
                part = f"{name}:"
                if run_.cpu_pct is not None:
                    part += f" proxy {run_.cpu_pct:3.0f}% {run_.cpu_us_per_tx or 0:5.0f} us/tx"
                if run_.host_busy_pct is not None:
                    part += f" host {run_.host_busy_pct:3.0f}%"
                parts.append(part)
            print(f"  {flag + ' ' + label:<17}{protocol:<10}" + "   ".join(parts))


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(scale: int) -> Iterator[str]:
    dbname = f"signoff_bench_{secrets.token_hex(6)}"
    psql("postgres", f"CREATE DATABASE {dbname}")
    try:
        print(f"pgbench -i -s {scale} {dbname} ...", flush=True)
        run(
            [
                "pgbench",
                "-i",
                "-q",
                "-s",
                str(scale),
                "-h",
                PG_HOST,
                "-p",
                str(PG_PORT),
                "-U",
                PG_USER,
                dbname,
            ],
            timeout=3600,
        )
        yield dbname
    finally:
        try:
            psql("postgres", f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        except BenchError as error:
            print(f"could not drop {dbname}: {error}", file=sys.stderr)


def finish_gateway(gateway: Gateway, label: str) -> list[str]:
    """Stop a gateway (it flushes its audit writer), verify its chain and print the
    result and the gateway's totals, each line prefixed by ``label``; the failures."""
    failures: list[str] = []
    code = gateway.proc.stop()
    if code not in (0, -signal.SIGTERM):
        failures.append(f"{gateway.name} exited {code} on SIGTERM:\n{tail(gateway.proc.log)}")
    signoff = Path(sys.executable).with_name("signoff")
    verify = subprocess.run(
        [
            str(signoff) if signoff.exists() else sys.executable,
            *([] if signoff.exists() else ["-m", "runner.cli"]),
            "gateway",
            "audit",
            "verify",
            "--config",
            str(gateway.config),
        ],
        capture_output=True,
        text=True,
        env=BASE_ENV,
        check=False,
        cwd=gateway.config.parent,
    )
    text = (verify.stdout + verify.stderr).strip()
    print("\n".join(label + line for line in text.splitlines()))
    with contextlib.suppress(OSError):  # the gateway's totals, logged at exit
        for line in gateway.proc.log.read_text(errors="replace").splitlines():
            if "audit log:" in line:
                print(label + line.partition("audit log:")[1] + line.partition("audit log:")[2])
    if verify.returncode != 0:
        failures.append(f"{label}audit verify exited {verify.returncode}: {text}")
    return failures


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--clients", type=int, default=8, help="pgbench -c")
    parser.add_argument("--jobs", type=int, default=2, help="pgbench -j")
    parser.add_argument("--scale", type=int, default=10, help="pgbench -i -s")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the matrix; median")
    parser.add_argument(
        "--profile", action="store_true", help="one extra -S simple gateway run under py-spy"
    )
    parser.add_argument(
        "--profile-only", action="store_true", help="skip the table: only the profiled run"
    )
    parser.add_argument(
        "--profile-workload",
        choices=("S", "N", "-S", "-N"),
        default="S",
        help="workload profiled: S (select-only) or N (simple-update)",
    )
    parser.add_argument(
        "--profile-protocol", choices=PROTOCOLS, default="simple", help="protocol profiled"
    )
    parser.add_argument(
        "--profile-native",
        action="store_true",
        help="py-spy --native (C frames too; pauses the gateway at each sample)",
    )
    parser.add_argument(
        "--profile-out", type=Path, default=None, help="where to keep py-spy's collapsed stacks"
    )
    parser.add_argument(
        "--rate",
        type=int,
        default=0,
        help="pgbench -R: a fixed rate (tps) instead of flat out; compares CPU per "
        "transaction at equal load",
    )
    parser.add_argument(
        "--workload",
        action="append",
        choices=("S", "N"),
        help="only this workload (repeatable; default: both)",
    )
    parser.add_argument(
        "--protocol",
        action="append",
        choices=PROTOCOLS,
        help="only this protocol (repeatable; default: both)",
    )
    parser.add_argument(
        "--python-relay",
        action="store_true",
        help="also run a second gateway with SIGNOFF_FAST_LANE=0 (every statement through "
        "the Python relay), to show what the C fast lane buys",
    )
    args = parser.parse_args(argv)
    args.profile = args.profile or args.profile_only
    workloads = [w for w in WORKLOADS if args.workload is None or w[0][1:] in args.workload]
    protocols = [p for p in PROTOCOLS if args.protocol is None or p in args.protocol]
    args.profile_workload = "-" + args.profile_workload.lstrip("-")
    if args.clients < 1 or args.duration < 1 or args.jobs < 1 or args.rounds < 1:
        parser.error("--clients, --duration, --jobs and --rounds must be positive")
    for tool in ("psql", "pgbench"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not on PATH", file=sys.stderr)
            return 2

    # SIGTERM unwinds like Ctrl-C, through every cleanup below.
    signal.signal(signal.SIGTERM, _interrupt)
    sys.path.insert(0, str(ROOT / "tests"))
    from oidc_issuer import OidcIssuer  # type: ignore[import-not-found]  # tests/

    failures: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            # Unwound in reverse: processes stop before the database is dropped.
            tmp = Path(tempfile.mkdtemp(prefix="signoff-bench-"))
            tmp.chmod(0o755)
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
            dbname = stack.enter_context(scratch_database(args.scale))
            issuer = stack.enter_context(OidcIssuer())
            targets: dict[str, Target | None] = {
                "direct": Target("direct", PG_PORT, PG_USER, dbname)
            }
            started = start_pgbouncer(tmp, dbname, args.clients)
            if started is None:
                print("note: pgbouncer is not installed; its columns are skipped")
                targets["pgbouncer"] = None
            else:
                stack.callback(started[0].stop)
                targets["pgbouncer"] = started[1]
            gateway = start_gateway(tmp, dbname, issuer)
            stack.callback(gateway.proc.stop)
            # Every run of a gateway target logs in with a fresh session of its own gateway.
            gateways = {"gateway": gateway}
            if args.python_relay:
                # The same gateway with the fast lane off, in a directory of its own so
                # the two share no config, state db or log (nor audit chain).
                home = tmp / "relay"
                home.mkdir()
                relay = start_gateway(
                    home, dbname, issuer, name="relay", extra_env={"SIGNOFF_FAST_LANE": "0"}
                )
                stack.callback(relay.proc.stop)
                gateways["relay"] = relay
            for name, each in gateways.items():
                targets[name] = each.session()  # checks the exchange before the runs
            names = [n for n in TARGETS if targets.get(n) is not None]
            for name in names:  # every path answers before anything is timed
                target = targets[name]
                assert target is not None
                run(
                    [
                        "psql",
                        "-X",
                        "-At",
                        "-h",
                        PG_HOST,
                        "-p",
                        str(target.port),
                        "-U",
                        target.user,
                        "-d",
                        target.dbname,
                        "-c",
                        "SELECT 1",
                    ],
                    env=target.env(),
                )
            print(
                f"{dbname}: scale {args.scale}; pgbench -c {args.clients} -j {args.jobs} "
                f"-T {args.duration} -n; targets: "
                + ", ".join(f"{n} :{targets[n].port}" for n in names)  # type: ignore[union-attr]
                + f"; {os.cpu_count()} CPUs",
                flush=True,
            )

            results: list[Result] = []
            cell = 0
            for round_ in range(0 if args.profile_only else args.rounds):
                for flag, _ in workloads:
                    for protocol in protocols:
                        order = names[cell % len(names) :] + names[: cell % len(names)]
                        cell += 1
                        for name in order:
                            target = gateways[name].session() if name in gateways else targets[name]
                            assert target is not None
                            result = run_pgbench(target, flag, protocol, args, dbname)
                            results.append(result)
                            shown = (
                                f"{result.tps:.0f} tps, {result.latency_ms:.3f} ms"
                                if result.error is None
                                else f"FAILED: {result.error}"
                            )
                            print(
                                f"  round {round_ + 1} {flag} {protocol:<8} {name:<9} {shown}",
                                flush=True,
                            )
                            if result.error is not None:
                                failures.append(f"{name} {flag} {protocol}: {result.error}")
                            if name in gateways and not gateways[name].proc.alive():
                                raise BenchError(f"{name} died:\n{tail(gateways[name].proc.log)}")

            profiles: list[str] = []
            if args.profile:
                what = f"{args.profile_workload} -M {args.profile_protocol}"
                stem = args.profile_out or Path(tempfile.gettempdir()) / (
                    f"signoff-gateway-profile-{dbname.rsplit('_', 1)[1]}"
                )
                for gil in (False, True):
                    kind = "GIL holders" if gil else "all threads"
                    out = stem.with_name(stem.name + ("-gil" if gil else "") + ".txt")
                    print(f"  profiling {what} through the gateway ({kind}) -> {out}", flush=True)
                    profiled, summary = profile_gateway(gateway, args, dbname, out, gil=gil)
                    shown = (
                        f"{profiled.tps:.0f} tps (py-spy attached)"
                        if profiled.error is None
                        else f"FAILED: {profiled.error}"
                    )
                    print(f"  profiled run: {shown}", flush=True)
                    if profiled.error is not None:
                        failures.append(f"profiled gateway run: {profiled.error}")
                    profiles.append(
                        f"\npy-spy, gateway process, {what}, {kind} "
                        f"({'native, ' if args.profile_native and not gil else ''}"
                        f"collapsed stacks in {out}; {shown}):\n{summary}"
                    )

            print()
            if results:
                print_table(results, names, args.rounds)
            if "pgbouncer" not in names:
                print("(pgbouncer not installed: no pgbouncer columns)")

            # Stop each gateway, then verify its chain; with two, say which line is whose.
            print()
            for name, each in gateways.items():
                failures += finish_gateway(each, f"{name}: " if len(gateways) > 1 else "")
            if results:
                for name in gateways:
                    transactions = sum(r.transactions for r in results if r.target == name)
                    print(
                        f"{name} runs processed {transactions} pgbench transactions "
                        "(each is 1 statement for -S, 5 for -N incl. BEGIN/END)"
                    )
            for profile in profiles:
                print(profile)
    except BenchError as error:
        failures.append(str(error))
    except KeyboardInterrupt:
        failures.append("interrupted")
    if failures:
        print("\nFAILED:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
