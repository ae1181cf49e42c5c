"""Drive HTTP endpoints on loopback with kept-alive connections, and start servers to drive.

The load comes from `wrk` when it is installed (C, one thread: it costs the server little CPU);
otherwise from a small asyncio client over raw sockets in a few processes. Every loop here is
bounded both in time and in request count, and every process started here is ended here.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmarks run as scripts: make `scripts.*` importable
    sys.path.append(str(ROOT))

from scripts import procfs  # noqa: E402 - after the sys.path entry above

HOST = "127.0.0.1"
# A hard cap per connection and per measurement, so a runaway loop cannot outlive its time box.
MAX_REQUESTS_PER_CONNECTION = 2_000_000
WRK_THREADS = 1
PYTHON_LOAD_PROCESSES = 2


@dataclass(frozen=True)
class Target:
    """One endpoint to drive: where, which headers, which status each answer must have."""

    name: str
    port: int
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"

    def request_bytes(self) -> bytes:
        """Render the target's HTTP/1.1 keep-alive GET request."""
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass(frozen=True)
class LoadResult:
    """What one timed run of concurrent clients achieved."""

    requests: int
    seconds: float
    errors: int
    tool: str

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


LOAD_TOOLS = ("auto", "wrk", "python")
_chosen = "auto"


def choose_load_tool(tool: str) -> None:
    """Pick the load generator: `wrk`, `python`, or `auto` (wrk when installed)."""
    global _chosen
    if tool not in LOAD_TOOLS:
        raise ValueError(f"unknown load tool {tool!r}")
    if tool == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    _chosen = tool


def load_tool() -> str:
    """Name the load generator in use."""
    if _chosen == "python" or (_chosen == "auto" and not shutil.which("wrk")):
        return "python-asyncio"
    return "wrk"


def drive(target: Target, connections: int, seconds: float) -> LoadResult:
    """Run `connections` kept-alive clients against `target` for `seconds`."""
    if load_tool() == "wrk":
        return _drive_wrk(target, connections, seconds)
    return _drive_python(target, connections, seconds)


# --- wrk ------------------------------------------------------------------------------------

_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_WRK_NON_OK = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _drive_wrk(target: Target, connections: int, seconds: float) -> LoadResult:
    command = [
        "wrk",
        "-t",
        str(min(WRK_THREADS, connections)),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "5s",
    ]
    for name, value in target.headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(target.url)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    return parse_wrk(done.stdout + done.stderr)


def parse_wrk(output: str) -> LoadResult:
    """Read requests, duration and errors out of wrk's report."""
    total = _WRK_TOTAL.search(output)
    if total is None:
        raise RuntimeError(f"wrk gave no result:\n{output}")
    requests = int(total.group(1))
    elapsed = float(total.group(2)) * _UNIT_SECONDS[total.group(3)]
    errors = sum(int(n) for n in _WRK_NON_OK.findall(output))
    socket_errors = _WRK_SOCKET.search(output)
    if socket_errors is not None:
        errors += sum(int(n) for n in socket_errors.groups())
    return LoadResult(requests=requests, seconds=elapsed, errors=errors, tool="wrk")


# --- the Python fallback ----------------------------------------------------------------------


def _drive_python(target: Target, connections: int, seconds: float) -> LoadResult:
    processes = min(PYTHON_LOAD_PROCESSES, connections)
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=_quiet_worker) as pool:
        parts = pool.starmap(_run_clients, [(target, share, seconds) for share in shares])
    requests = sum(p[0] for p in parts)
    errors = sum(p[1] for p in parts)
    elapsed = max(p[2] for p in parts)
    return LoadResult(requests=requests, seconds=elapsed, errors=errors, tool="python-asyncio")


def _quiet_worker() -> None:
    """Let the pool's SIGTERM end a worker silently.

    A worker is forked from a benchmark whose SIGTERM handler raises KeyboardInterrupt (so that
    its servers are stopped); inherited, that handler made every worker print a traceback when
    the pool ended it. Ctrl-C is the parent's to handle.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_clients(target: Target, connections: int, seconds: float) -> tuple[int, int, float]:
    return asyncio.run(_clients(target, connections, seconds))


async def _clients(target: Target, connections: int, seconds: float) -> tuple[int, int, float]:
    start = time.perf_counter()
    deadline = start + seconds
    counts = await asyncio.gather(*(_client(target, deadline) for _ in range(connections)))
    return sum(c[0] for c in counts), sum(c[1] for c in counts), time.perf_counter() - start


async def _client(target: Target, deadline: float) -> tuple[int, int]:
    """Send requests on one connection until the deadline; reconnect when the server closes."""
    request = target.request_bytes()
    done = errors = 0
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < deadline and done + errors < MAX_REQUESTS_PER_CONNECTION:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, target.port)
            writer.write(request)
            status, keep_alive = await asyncio.wait_for(_read_response(reader), timeout=5)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            writer = _close(writer)
            continue
        if status == target.status:
            done += 1
        else:
            errors += 1
        if not keep_alive:
            writer = _close(writer)
    _close(writer)
    return done, errors


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, length, keep_alive = parse_head(head)
    if length:
        await reader.readexactly(length)
    return status, keep_alive


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """Return status, Content-Length and whether the connection stays open."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep_alive = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep_alive = False
    return status, length, keep_alive


# --- single-client latency ------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Quantiles of one client's sequential requests on one kept-alive connection, in ms."""

    count: int
    p50: float
    p99: float
    mean: float


def latency(target: Target, count: int, warmup: int = 200, max_seconds: float = 30.0) -> Latency:
    """Time `count` sequential requests on one kept-alive connection (after `warmup` more)."""
    request = target.request_bytes()
    samples: list[float] = []
    deadline = time.monotonic() + max_seconds
    with socket.create_connection((HOST, target.port), timeout=5) as sock:
        # Without NODELAY a small request can wait on Nagle + delayed ACK: 40 ms of nothing.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = sock.makefile("rb")
        for i in range(warmup + count):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            sock.sendall(request)
            status = _read_blocking(stream)
            elapsed = time.perf_counter() - started
            if status != target.status:
                raise RuntimeError(f"{target.name}: expected {target.status}, got {status}")
            if i >= warmup:
                samples.append(elapsed * 1000)
    if not samples:
        raise RuntimeError(f"{target.name}: no latency samples within {max_seconds} s")
    samples.sort()
    return Latency(
        count=len(samples),
        p50=statistics.median(samples),
        p99=samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))],
        mean=statistics.fmean(samples),
    )


def _read_blocking(stream) -> int:  # type: ignore[no-untyped-def]
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()
        if not line:
            raise ConnectionError("the server closed the connection")
        head += line
    status, length, _ = parse_head(head)
    if length:
        stream.read(length)
    return status


def probe(target: Target) -> tuple[int, bytes, dict[str, str]]:
    """Send one request and return status, body and headers (lower-case names)."""
    with socket.create_connection((HOST, target.port), timeout=5) as sock:
        sock.sendall(target.request_bytes())
        stream = sock.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = stream.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            head += line
        status, length, _ = parse_head(head)
        body = stream.read(length) if length else b""
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return status, body, headers


# --- server processes -----------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until something accepts connections on `port`, failing early if `process` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before port {port} opened")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")


class Servers:
    """Start server processes, each in its own process group, and end exactly those."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(
        self, name: str, command: Sequence[str], port: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """Start `command`, log to a file, and wait until it listens on `port`."""
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        log.close()  # the child holds its own descriptor
        self.processes.append(process)
        try:
            wait_for_port(port, process)
        except (RuntimeError, TimeoutError) as error:
            tail = "\n".join(self.log(name).splitlines()[-20:])
            raise RuntimeError(f"{name}: {error}; its log ends with:\n{tail}") from None
        return process

    def stop(self, process: subprocess.Popen) -> None:
        """End one server and its workers: TERM, then KILL after a grace period."""
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
        # Gunicorn's workers die with their master, but make sure no orphan keeps a core busy.
        _signal_group(process, signal.SIGKILL)
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in list(self.processes):
            self.stop(process)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def group_cpu_seconds(process: subprocess.Popen) -> float:
    """Return the CPU time used so far by the live processes of `process`'s group."""
    return procfs.group_cpu_seconds(process.pid)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    # The group this process leads: only what we started.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


@contextmanager
def servers(log_dir: Path) -> Iterator[Servers]:
    """Yield a Servers whose processes are all ended on exit, even on Ctrl-C or SIGTERM."""
    started = Servers(log_dir)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield started
    finally:
        started.stop_all()
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def machine() -> str:
    """Describe this machine: cores, CPU model and how busy it is right now."""
    model = "unknown CPU"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, load average {os.getloadavg()[0]:.2f}"


def python() -> str:
    """Return the interpreter running this script, so servers run in the same environment."""
    return sys.executable
