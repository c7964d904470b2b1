"""gunicorn on loopback for the benchmark: start, wait until every worker is up, stop, read RSS."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is `parent` (the gunicorn workers of a master), from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The command name is in parentheses and may hold spaces: split after it.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(entry))
    return sorted(children)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set since the process started) of `pid`, in kB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


class Gunicorn:
    """One gunicorn master serving `app` with the repository's gunicorn.conf.py on loopback.

    stdout/stderr (access and error logs, as the production config writes them) go to
    `log_path`, never to a pipe that could fill up and stall the server.
    """

    def __init__(self, app: str, log_path: Path, *, workers: int = 2, env: dict | None = None):
        self.app = app
        self.workers = workers
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            **(env or {}),
            "WEB_CONCURRENCY": str(workers),
            "BATCHSVC_BIND": f"{LOOPBACK}:{self.port}",
        }
        self.process: subprocess.Popen | None = None
        self._log = None

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> Gunicorn:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn",
                "-c", str(ROOT / "gunicorn.conf.py"),
                "--pythonpath", str(BENCH),
                self.app,
            ],
            cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until /healthz answers and every worker has booted (a worker answers only once booted)."""
        deadline = time.monotonic() + timeout
        answered = False
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn {self.app} exited with {self.process.returncode}:\n{self.log_tail()}")
            if not answered:
                try:
                    answered = requests.get(self.url + "/healthz", timeout=2).status_code == 200
                except requests.RequestException:
                    pass
            if answered and len(self.worker_pids()) == self.workers:
                time.sleep(0.5)  # the last worker forked may still be importing the app
                return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn {self.app} did not become ready in {timeout:.0f}s:\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        return child_pids(self.process.pid) if self.process else []

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the master (graceful), then SIGKILL it and its workers if they linger."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            workers = child_pids(process.pid)
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # Only on this path: a graceful master has already reaped its own workers.
                for pid in [process.pid, *workers]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
