"""A real gunicorn on loopback, for the tests that need processes and for the benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
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


class Gunicorn:
    """One gunicorn master serving `app` with the repository's gunicorn.conf.py on a free loopback port.

    `env` is added to this process's environment (the app's settings; gunicorn options such as
    BATCHSVC_THREADS or GUNICORN_CMD_ARGS="--preload"); WEB_CONCURRENCY and BATCHSVC_BIND come
    from `workers` and the port. stderr (the error log) goes to `log_path`, or to a temporary file
    that stop() removes, never to a pipe that could fill up and stall the server; stdout (the
    request log, one line per request) goes there too, or is discarded (`access_log=False`), or
    kept in a file of its own for `stdout()` (`capture_stdout=True`).
    `pythonpath` is a folder gunicorn imports `app` from (bench/bare_app.py). start() returns once
    /healthz answers, and with `every_worker` only once every worker has booted as well.
    """

    def __init__(
        self,
        app: str = "wsgi:app",
        *,
        workers: int = 2,
        env: dict | None = None,
        log_path: Path | None = None,
        access_log: bool = True,
        capture_stdout: bool = False,
        pythonpath: Path | None = None,
        every_worker: bool = False,
    ):
        self.app = app
        self.workers = workers
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.env = {
            **os.environ,
            **(env or {}),
            "WEB_CONCURRENCY": str(workers),
            "BATCHSVC_BIND": f"{LOOPBACK}:{self.port}",
        }
        self.access_log = access_log
        self.capture_stdout = capture_stdout
        self._stdout = None
        self.pythonpath = pythonpath
        self.every_worker = every_worker
        self.log_path = log_path
        self._temporary_log = log_path is None
        self.process: subprocess.Popen | None = None
        self._log = None

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]
        if self.pythonpath is not None:
            command += ["--pythonpath", str(self.pythonpath)]
        return [*command, self.app]

    def start(self, timeout: float = 60) -> Gunicorn:
        """Start the server and wait until it is ready; stopped again if it never is."""
        if self._temporary_log:
            self._log = tempfile.NamedTemporaryFile(prefix="batchsvc-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115 - closed in stop()
            self.log_path = Path(self._log.name)
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        stdout = self._log if self.access_log else subprocess.DEVNULL
        if self.capture_stdout:
            self._stdout = tempfile.NamedTemporaryFile(prefix="batchsvc-stdout-", suffix=".log", delete=False)  # noqa: SIM115 - closed in stop()
            stdout = self._stdout
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=self._log
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /healthz answers (and, with `every_worker`, every worker has booted: a worker
        answers only once booted, but /healthz reaches just one of them)."""
        deadline = time.monotonic() + timeout
        answered = False
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn {self.app} exited with {self.process.returncode}:\n{self.log_tail()}")
            if not answered:
                try:
                    answered = requests.get(self.url + "/healthz", timeout=2).status_code == 200
                except requests.RequestException:
                    pass  # workers still booting
            if answered and not self.every_worker:
                return
            if answered and len(self.worker_pids()) == self.workers:
                time.sleep(0.5)  # the last worker forked may still be importing the app
                return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn {self.app} did not become ready in {timeout:.0f}s:\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        if self.process is None or self.process.poll() is not None:
            return []
        return child_pids(self.process.pid)

    def log(self) -> str:
        """What the server has written so far (its error log, and its access log unless discarded)."""
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def stdout(self) -> str:
        """What the server wrote to stdout so far (with capture_stdout=True): the request log."""
        with open(self._stdout.name, errors="replace") as out:
            return out.read()

    def log_tail(self, size: int = 3000) -> str:
        return self.log()[-size:]

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the master (graceful), then SIGKILL it and its workers if they linger."""
        process = self.process
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
        if self._stdout is not None:
            self._stdout.close()
            os.unlink(self._stdout.name)
            self._stdout = None
        if self._log is not None:
            self._log.close()
            self._log = None
            if self._temporary_log:
                self.log_path.unlink(missing_ok=True)
