"""Run real `tether agent` processes on loopback, and wait for what they should reach."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import TETHER, free_port, wait_until_ready

# Fast pacing for tests: poll five times a second whatever the server hints.
FAST = {
    "TETHER_POLL_INTERVAL": "0.2",
    "TETHER_FOLLOW_POLL_HINT": "false",
    "TETHER_BACKOFF_INITIAL": "0.1",
    "TETHER_BACKOFF_MAX": "0.5",
    "TETHER_HEARTBEAT_INTERVAL": "1",
    "TETHER_FREE_DISK_RESERVE_BYTES": "0",
}


def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Call `check` until it returns something truthy (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.TransportError, AssertionError) as error:
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise TimeoutError(f"not reached within {timeout} s; last: {last!r}")


class AgentProcess:
    """A real `tether agent run` with its own data dir and inference port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The agent's own settings only: a TETHER_* meant for a server must not leak in.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        self.env = {**inherited, **FAST, **(env or {})}
        self.extra_args = extra_args or []
        self.enroll_output = ""  # what `tether agent enroll` printed, stdout then stderr
        self.process: subprocess.Popen | None = None
        self._log_file: Any = None
        self.log_path = data_dir.parent / f"agent-{self.port}.log"

    def enroll(
        self,
        control_plane: str,
        environment: str,
        token: str,
        hostname: str = "e2e",
        extra_args: Sequence[str] = (),
    ) -> str:
        """Run `tether agent enroll` and return the agent id."""
        done = self.try_enroll(control_plane, environment, token, hostname, extra_args)
        if done.returncode != 0:
            raise RuntimeError(f"enroll failed: {self.enroll_output}")
        return json.loads(done.stdout)["agent_id"]

    def try_enroll(
        self,
        control_plane: str,
        environment: str,
        token: str,
        hostname: str = "e2e",
        extra_args: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Run `tether agent enroll` and return what it did, failed or not."""
        done = subprocess.run(
            [
                *TETHER,
                "agent",
                "enroll",
                "--url",
                control_plane,
                "--env",
                environment,
                "--token",
                token,
                "--data-dir",
                str(self.data_dir),
                "--hostname",
                hostname,
                "--json",
                *extra_args,
            ],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        self.enroll_output = done.stdout + done.stderr
        return done

    def start(self) -> AgentProcess:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                *TETHER,
                "agent",
                "run",
                "--data-dir",
                str(self.data_dir),
                "--serve",
                f"127.0.0.1:{self.port}",
                *self.extra_args,
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        wait_until_ready(f"{self.url}/v2/health/live", self.process, timeout=60)
        return self

    def predict(self, model: str, rows: list[dict], timeout: float = 10.0) -> httpx.Response:
        return httpx.post(f"{self.url}/predict/{model}", json={"instances": rows}, timeout=timeout)

    def serving_version(self, model: str, rows: list[dict]) -> int | None:
        """Return the version that answers a prediction, or None if none does."""
        try:
            response = self.predict(model, rows)
        except httpx.TransportError:
            return None
        return response.json()["version"] if response.status_code == 200 else None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Signal the agent and return how long it took to exit."""
        if self.process is None or self.process.poll() is not None:
            self._close_log()
            return 0.0
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        took = time.monotonic() - started
        self._close_log()
        return took

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
