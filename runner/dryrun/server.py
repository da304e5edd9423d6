"""Embedded server supervision: a PostgreSQL from the ``pgserver`` wheel for dry-run.

``embedded_server_url()`` runs PostgreSQL from the binaries bundled in the
``pgserver`` wheel, in a data directory under ``$SIGNOFF_HOME/pgdata`` (default
``~/.cache/signoff/pgdata``). The server listens only on a unix socket in a
directory that only its owner can enter, so nobody else on the machine can
reach its trust-authenticated superuser. It is shared: a process that finds it
running reuses it, and the last process that used it stops it when it exits.

PostgreSQL refuses to run as root. When we are root (CI containers usually
are), the cluster is owned and run by an unprivileged system user,
``signoff-pg``, created on first use; the directories on the way to the data
directory and to the bundled binaries get the search bit for others (``o+x``,
never read) so that user can reach them.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg

from runner.errors import DatabaseError

EMBEDDED_SYSTEM_USER = "signoff-pg"
_PORT = 5432
_SOCKET_NAME = f".s.PGSQL.{_PORT}"
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_START_TIMEOUT_S = 60
_CONNECT_TIMEOUT_S = 10
# A scratch cluster holds nothing worth keeping: trade durability for speed.
_SERVER_SETTINGS = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged user the cluster belongs to when we are root."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Running:
    pid: int
    socket_dir: Path
    port: int
    status: str  # "starting", "ready", "stopping", or "" before PostgreSQL 10


# data dir -> URL, for servers this process holds a handle on.
_held: dict[Path, str] = {}


def data_dir() -> Path:
    """Where the embedded cluster lives: $SIGNOFF_HOME/pgdata, else ~/.cache/signoff/pgdata
    (/var/tmp/signoff-root/pgdata for root)."""
    home = os.environ.get("SIGNOFF_HOME")
    if home:
        base = Path(home).expanduser()
    elif os.geteuid() == 0:
        # PostgreSQL runs as an unprivileged system user; keep its files out of
        # /root rather than opening root's home to it.
        base = Path("/var/tmp/signoff-root")
    else:
        base = Path.home() / ".cache" / "signoff"
    return (base / "pgdata").absolute()


def embedded_server_url() -> str:
    """Start (or reuse) the embedded PostgreSQL and return a URL psycopg accepts.

    The URL names the unix socket directory (``postgresql://postgres@/postgres
    ?host=/path&port=5432``). Raises DatabaseError with a one-line message when
    the server cannot be set up or started.
    """
    if sys.platform == "win32":
        raise DatabaseError(
            "the embedded PostgreSQL runs on Linux and macOS only; pass a database URL instead"
        )
    pgdata = data_dir()
    url = _held.get(pgdata)
    if url is not None and _answers(url):
        return url
    try:
        return _start_or_reuse(pgdata)
    except DatabaseError:
        raise
    except (OSError, subprocess.SubprocessError) as exc:
        raise DatabaseError(
            f"cannot start the embedded PostgreSQL in {pgdata}: {_one_line(str(exc))}"
        ) from exc


def stop_embedded_server() -> None:
    """Give up this process's handle on the embedded server (current data_dir()).

    The server stops when no live process holds a handle on it any more. This
    also happens by itself when the process exits.
    """
    _release(data_dir())


def _start_or_reuse(pgdata: Path) -> str:
    install = _pginstall()
    run_as = _ensure_system_user() if os.geteuid() == 0 else None
    base = pgdata.parent
    base.mkdir(parents=True, exist_ok=True)
    if run_as is not None:
        _grant_search(base, run_as)
        install = _install_for(install, base, run_as)
    with _locked(base / f"{pgdata.name}.lock"):
        if _read_running(pgdata) is None:
            _ensure_initialised(pgdata, install, run_as)
            _start(pgdata, install, run_as)
        running = _wait_ready(pgdata)
        url = _socket_url(running.socket_dir, running.port)
        if not _answers(url, timeout=_CONNECT_TIMEOUT_S):
            raise DatabaseError(
                f"a PostgreSQL process (pid {running.pid}) holds {pgdata} but does not answer "
                f"on {running.socket_dir}; stop it, or remove {pgdata} to start from scratch"
            )
        first_handle = pgdata not in _held
        _handles_update(pgdata, add=os.getpid())
        _held[pgdata] = url
    if first_handle:
        atexit.register(_release, pgdata, os.getpid())
    return url


def _pginstall() -> Path:
    """The PostgreSQL installation bundled in the pgserver wheel (not imported)."""
    spec = importlib.util.find_spec("pgserver")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DatabaseError(
            "the embedded PostgreSQL needs the pgserver package (pip install pgserver); "
            "or pass the URL of a PostgreSQL server"
        )
    install = Path(locations[0]) / "pginstall"
    if not (install / "bin" / "postgres").is_file():
        raise DatabaseError(f"pgserver is installed but {install}/bin/postgres is missing")
    return install


def _ensure_system_user() -> _RunAs:
    import pwd

    try:
        entry = pwd.getpwnam(EMBEDDED_SYSTEM_USER)
    except KeyError:
        _create_system_user()
        entry = pwd.getpwnam(EMBEDDED_SYSTEM_USER)
    if entry.pw_uid == 0:
        raise DatabaseError(
            f"the system user {EMBEDDED_SYSTEM_USER} has uid 0; PostgreSQL cannot run as root"
        )
    return _RunAs(EMBEDDED_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def _create_system_user() -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    command = [
        useradd,
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        EMBEDDED_SYSTEM_USER,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DatabaseError(
            f"PostgreSQL cannot run as root and the system user {EMBEDDED_SYSTEM_USER} "
            f"could not be created ({exc.strerror}); run as a non-root user or pass the "
            "URL of a PostgreSQL server"
        ) from exc
    # 9: the name exists (another process created it in the meantime).
    if done.returncode not in (0, 9):
        raise DatabaseError(
            f"PostgreSQL cannot run as root and `{' '.join(command)}` failed: "
            f"{_one_line(done.stderr or done.stdout)}; run as a non-root user or pass "
            "the URL of a PostgreSQL server"
        )


def _needed_bit(st: os.stat_result, run_as: _RunAs) -> int:
    if st.st_uid == run_as.uid:
        return stat.S_IXUSR
    if st.st_gid == run_as.gid:
        return stat.S_IXGRP
    return stat.S_IXOTH


def _reachable(path: Path, run_as: _RunAs) -> bool:
    return all(
        directory.stat().st_mode & _needed_bit(directory.stat(), run_as)
        for directory in [*reversed(path.parents), path]
    )


def _install_for(install: Path, base: Path, run_as: _RunAs) -> Path:
    """The installation run_as can execute: the wheel's, or a private copy of it."""
    return install if _reachable(install, run_as) else _private_copy(install, base)


def _private_copy(install: Path, base: Path) -> Path:
    """A copy of the bundled binaries where the system user can read them.

    The wheel may sit under a directory only root may enter (a virtualenv in
    /root); copying once beats changing the mode of someone's home directory.
    """
    version = (install / "bin" / "postgres").stat()
    target = base / f"pgserver-{version.st_size}-{int(version.st_mtime)}"
    copied = target / "pgserver" / "pginstall"
    if not (copied / "bin" / "postgres").is_file():
        staging = base / f"{target.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(install, staging / "pgserver" / "pginstall", symlinks=True)
        # The binaries find their libraries at $ORIGIN/../../../pgserver.libs.
        libs = install.parent.parent / "pgserver.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / "pgserver.libs", symlinks=True)
        try:
            staging.rename(target)
        except OSError:  # another process finished the same copy first
            shutil.rmtree(staging, ignore_errors=True)
    return copied


def _grant_search(path: Path, run_as: _RunAs) -> None:
    """Let run_as traverse every directory from / down to path (adds o+x where missing)."""
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        needed = _needed_bit(st, run_as)
        if not st.st_mode & needed:
            try:
                directory.chmod(stat.S_IMODE(st.st_mode) | needed)
            except OSError as exc:
                raise DatabaseError(
                    f"the PostgreSQL system user {run_as.name} cannot enter {directory} and its "
                    f"mode cannot be changed ({exc.strerror}); set SIGNOFF_HOME to a directory "
                    "it can reach"
                ) from exc


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    import fcntl

    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_running(pgdata: Path) -> _Running | None:
    """The server described by postmaster.pid, if its process is alive."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DatabaseError(f"cannot read {pgdata / 'postmaster.pid'}: {exc.strerror}") from exc
    # pid, data dir, start time, port, socket dir, listen address, shmem key, status
    if len(lines) < 5 or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0].strip())
    if not _pid_alive(pid):
        return None
    port = int(lines[3].strip()) if lines[3].strip().isdigit() else _PORT
    socket_dir = Path(lines[4].strip().split(",")[0]) if lines[4].strip() else pgdata
    status = lines[7].strip() if len(lines) > 7 else ""
    return _Running(pid, socket_dir, port, status)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.exists():  # Linux: make sure the pid was not reused
        try:
            return b"postgres" in cmdline.read_bytes()
        except OSError:
            return True
    return True


def _ensure_initialised(pgdata: Path, install: Path, run_as: _RunAs | None) -> None:
    """Run initdb when pgdata holds no cluster; make sure run_as owns it when it does."""
    if (pgdata / "PG_VERSION").exists():
        if run_as is not None and pgdata.stat().st_uid != run_as.uid:
            _chown_tree(pgdata, run_as)
        return
    if pgdata.exists():
        if any(pgdata.iterdir()):
            raise DatabaseError(
                f"{pgdata} is not empty and holds no PostgreSQL cluster; remove it or set "
                "SIGNOFF_HOME to another directory"
            )
        pgdata.rmdir()
    # initdb into a staging directory and rename it into place: an interrupted
    # initdb never leaves a half-made cluster where the next run would find it.
    staging = Path(tempfile.mkdtemp(prefix=f".{pgdata.name}.initdb-", dir=pgdata.parent))
    try:
        if run_as is not None:
            os.chown(staging, run_as.uid, run_as.gid)
        done = _run(
            [
                str(install / "bin" / "initdb"),
                "-D",
                str(staging),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            run_as,
            timeout=300,
        )
        if done.returncode != 0:
            raise DatabaseError(
                f"initdb failed for the embedded PostgreSQL in {pgdata}: "
                f"{_last_error_line(done.stdout)}"
            )
        staging.rename(pgdata)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _chown_tree(root: Path, run_as: _RunAs) -> None:
    os.chown(root, run_as.uid, run_as.gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), run_as.uid, run_as.gid, follow_symlinks=False)


def _socket_dir(pgdata: Path, run_as: _RunAs | None) -> Path:
    """pgdata itself when the socket path fits in sun_path, else a private temp dir."""
    if len(os.fsencode(pgdata / _SOCKET_NAME)) <= _SUN_PATH_MAX:
        return pgdata
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:12]
    directory = Path(tempfile.gettempdir()) / f"signoff-pg-{os.geteuid()}-{digest}"
    owner = run_as.uid if run_as is not None else os.geteuid()
    try:
        directory.mkdir(mode=0o700)
        if run_as is not None:
            os.chown(directory, run_as.uid, run_as.gid)
    except FileExistsError:
        pass
    st = directory.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != owner or st.st_mode & 0o077:
        raise DatabaseError(
            f"{directory} (socket directory of the embedded PostgreSQL) is not a private "
            f"directory owned by uid {owner}; remove it"
        )
    return directory


def _start(pgdata: Path, install: Path, run_as: _RunAs | None) -> None:
    socket_dir = _socket_dir(pgdata, run_as)
    log = pgdata / "signoff-server.log"
    options = " ".join(
        [
            "-h ''",  # no TCP listener: the unix socket only
            f"-k {shlex.quote(str(socket_dir))}",
            f"-p {_PORT}",
            *(f"-c {setting}" for setting in _SERVER_SETTINGS),
        ]
    )
    done = _run(
        [
            str(install / "bin" / "pg_ctl"),
            "-D",
            str(pgdata),
            "-l",
            str(log),
            "-o",
            options,
            "-w",
            "-t",
            str(_START_TIMEOUT_S),
            "start",
        ],
        run_as,
        timeout=_START_TIMEOUT_S + 30,
    )
    if done.returncode != 0:
        reason = _last_error_line(_tail(log)) or _last_error_line(done.stdout)
        raise DatabaseError(
            f"the embedded PostgreSQL in {pgdata} did not start: {reason}; see {log}, "
            f"or remove {pgdata} to start from scratch"
        )


def _wait_ready(pgdata: Path) -> _Running:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        running = _read_running(pgdata)
        if running is None:
            raise DatabaseError(
                f"the embedded PostgreSQL in {pgdata} is not running after start; "
                f"see {pgdata / 'signoff-server.log'}"
            )
        if (
            running.status in ("ready", "")
            and (running.socket_dir / f".s.PGSQL.{running.port}").exists()
        ):
            return running
        if time.monotonic() > deadline:
            raise DatabaseError(
                f"the embedded PostgreSQL in {pgdata} (pid {running.pid}) is not ready "
                f"(status {running.status or 'unknown'}); see {pgdata / 'signoff-server.log'}"
            )
        time.sleep(0.1)


def _socket_url(socket_dir: Path, port: int, dbname: str = "postgres") -> str:
    host = urllib.parse.quote(str(socket_dir), safe="/")
    return f"postgresql://postgres@/{dbname}?host={host}&port={port}"


def _answers(url: str, timeout: int = 2) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _handles_path(pgdata: Path) -> Path:
    return pgdata.parent / f"{pgdata.name}.handles.json"


def _handles_update(
    pgdata: Path, *, add: int | None = None, remove: int | None = None
) -> list[int]:
    """Update the list of live processes using the server (call with the lock held)."""
    path = _handles_path(pgdata)
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except (FileNotFoundError, ValueError, TypeError):
        pids = []
    pids = [p for p in pids if p != remove and _pid_alive_any(p)]
    if add is not None and add not in pids:
        pids.append(add)
    path.write_text(json.dumps(pids))
    return pids


def _pid_alive_any(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _release(pgdata: Path, owner_pid: int | None = None) -> None:
    """Drop this process's handle; stop the server if no live process holds one."""
    if owner_pid is not None and owner_pid != os.getpid():
        return  # a forked child inherited the atexit hook: not its handle
    if _held.pop(pgdata, None) is None:
        return
    with contextlib.suppress(Exception), _locked(pgdata.parent / f"{pgdata.name}.lock"):
        if _handles_update(pgdata, remove=os.getpid()):
            return
        if _read_running(pgdata) is None:
            return
        install = _pginstall()
        run_as = _ensure_system_user() if os.geteuid() == 0 else None
        if run_as is not None:
            install = _install_for(install, pgdata.parent, run_as)
        _run(
            [str(install / "bin" / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
            run_as,
            timeout=90,
        )


def _run(args: Sequence[str], run_as: _RunAs | None, *, timeout: float) -> _Done:
    """Run a PostgreSQL program (as run_as when given); stdout and stderr together.

    The output goes to a temporary file, not a pipe: the postmaster that pg_ctl
    leaves behind must not hold our pipe open.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    extra: dict[str, Any] = {}
    if run_as is not None:
        extra = {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
            env=env,
            timeout=timeout,
            check=False,
            **extra,
        )
        out.seek(0)
        return _Done(proc.returncode, out.read())


@dataclass(frozen=True)
class _Done:
    returncode: int
    stdout: str


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open(errors="replace") as handle:
            return "".join(_last(handle, lines))
    except OSError:
        return ""


def _last(handle: IO[str], n: int) -> list[str]:
    kept: list[str] = []
    for line in handle:
        kept.append(line)
        if len(kept) > n:
            kept.pop(0)
    return kept


_ERROR_LINE = re.compile(r"\b(FATAL|PANIC|ERROR|error|could not|cannot)\b")


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line
    return lines[-1] if lines else "no output"


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "no details"
