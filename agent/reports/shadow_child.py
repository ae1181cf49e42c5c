"""Run shadow models in a child process, so that their CPU never holds the primary's GIL.

The parent sends pickled messages on the child's stdin and reads the answers on its stdout:

    ("load", key, model)   keep `model` under `key` (sent once per model and child)
    ("predict", key, rows) -> ("ok", predictions, probabilities, seconds) | ("error", text)

The child runs at a lower priority, dies with the agent (the kernel sends it SIGKILL when the
parent exits, and it leaves when its stdin closes), and a child that dies is noticed on the next
read (`ShadowCrashed`) and started afresh on the next call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, BinaryIO

from agent.errors import AgentError
from agent.serving.runtime import Prediction

log = logging.getLogger("tether.agent.shadow")
CHILD_NICENESS = 10
KEPT_MODELS = 4  # models the child holds at once (a swap brings a new one)
NATIVE_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_ROOT = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1


class ShadowCrashed(AgentError):
    """The shadow's child process died or answered nonsense."""


class ShadowFailed(AgentError):
    """The shadow model raised on a batch (the child lives on)."""


class ShadowProcess:
    """A child process that runs shadow models on batches of rows; one caller at a time."""

    def __init__(self, niceness: int = CHILD_NICENESS) -> None:
        self.niceness = niceness
        self.starts = 0
        self.crashes = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._loaded: dict[Any, Any] = {}  # key -> model sent to the current child
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def start(self) -> None:
        """Start the child now, if it is not running (it takes seconds to import its models)."""
        with self._lock:
            self._running()

    def predict(self, model: Any, rows: list[dict[str, Any]]) -> tuple[Any, float]:
        """Return the model's Prediction on `rows` and the seconds the child spent on it."""
        with self._lock:
            child = self._running()
            key = _key(model)
            try:
                if key not in self._loaded:
                    self._forget_old()
                    _send(child.stdin, ("load", key, model))
                    self._loaded[key] = model
                _send(child.stdin, ("predict", key, rows))
                answer = pickle.load(child.stdout)  # type: ignore[arg-type]
            except (OSError, EOFError, pickle.UnpicklingError) as error:
                self._crashed(error)
                raise ShadowCrashed(f"shadow process died: {error}") from error
        if answer[0] == "error":
            raise ShadowFailed(answer[1])
        _, predictions, probabilities, seconds = answer
        classes = getattr(model, "classes", None)
        return Prediction(predictions, probabilities, classes), seconds

    def stop(self, timeout: float = 2.0) -> None:
        """End the child: close its stdin, then kill it if it lingers."""
        # A child stuck in a model holds the lock in predict(): take the child without it then.
        self._stopped = True  # no batch still on its way starts another child
        locked = self._lock.acquire(timeout=timeout)
        try:
            child, self._child = self._child, None
            self._loaded.clear()
        finally:
            if locked:
                self._lock.release()
        if child is None:
            return
        with contextlib.suppress(OSError):
            child.stdin.close()  # type: ignore[union-attr]
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        with contextlib.suppress(OSError):
            child.stdout.close()  # type: ignore[union-attr]

    def _running(self) -> subprocess.Popen[bytes]:
        child = self._child
        if child is not None and child.poll() is None:
            return child
        if child is not None:
            self._crashed(f"exit status {child.returncode}")
        if self._stopped:
            raise ShadowCrashed("the shadow process was stopped")
        env = dict(os.environ)
        # One thread for the native math: the shadow is a background job at a lower priority,
        # and idle BLAS/OpenMP workers spinning on the other cores would take CPU from the
        # primary (and count in the shadow's measured CPU time).
        for variable in NATIVE_THREADS:
            env[variable] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_ROOT), *filter(None, [env.get("PYTHONPATH", "")])]
        )
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.reports.shadow_child",
                str(self._target_niceness()),
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self._child = child
        self._loaded.clear()
        self.starts += 1
        log.info("shadow process %d started", child.pid)
        return child

    def _target_niceness(self) -> int:
        # From the agent's own niceness: the calling thread's (inherited by the child) may differ.
        return min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + self.niceness)

    def _crashed(self, why: object) -> None:
        self.crashes += 1
        child, self._child = self._child, None
        self._loaded.clear()
        log.warning("shadow process died (%s); a new one starts with the next batch", why)
        if child is not None:
            with contextlib.suppress(OSError):
                child.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                child.wait(1.0)
            for stream in (child.stdin, child.stdout):
                with contextlib.suppress(OSError):
                    stream.close()  # type: ignore[union-attr]

    def _forget_old(self) -> None:
        while len(self._loaded) >= KEPT_MODELS:
            oldest = next(iter(self._loaded))
            del self._loaded[oldest]
            _send(self._child.stdin if self._child else None, ("forget", oldest, None))


def _key(model: Any) -> tuple[Any, ...]:
    sha256 = getattr(model, "sha256", None)
    return (getattr(model, "name", None), getattr(model, "version", None), sha256 or id(model))


def _send(stream: IO[bytes] | None, message: tuple[Any, ...]) -> None:
    assert stream is not None
    # Pickled whole first: a message that cannot be pickled must not leave half of it in the pipe.
    stream.write(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    stream.flush()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (best effort elsewhere)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def serve(inbox: BinaryIO, outbox: BinaryIO) -> None:
    """Answer the parent's messages until its end of the pipe closes."""
    models: dict[Any, Any] = {}
    cold: set[Any] = set()  # models not yet run in this process
    while True:
        try:
            kind, key, payload = pickle.load(inbox)
        except EOFError:
            return
        if kind == "load":
            models[key] = payload
            cold.add(key)
            continue
        if kind == "forget":
            models.pop(key, None)
            cold.discard(key)
            continue
        if key in cold:
            # A model's first call in a fresh process pays for lazy imports and caches (ten
            # times a warm call): run it once untimed so the latency samples measure the model.
            cold.discard(key)
            with contextlib.suppress(Exception):  # a failing model fails again just below
                models[key].predict(payload)
        # CPU time, not wall time: this process runs at a lower priority, so on a busy host its
        # wall time would measure the neighbours and fail a sound candidate's latency check.
        started = time.process_time()
        try:
            prediction = models[key].predict(payload)
            answer: tuple[Any, ...] = (
                "ok",
                prediction.predictions,
                prediction.probabilities,
                time.process_time() - started,
            )
        except Exception as error:  # the model's failure is reported, the child lives on
            answer = ("error", f"{type(error).__name__}: {error}")
        pickle.dump(answer, outbox, protocol=pickle.HIGHEST_PROTOCOL)
        outbox.flush()


def main() -> None:
    """Serve as `python -m agent.reports.shadow_child NICENESS PARENT_PID`, libraries loaded."""
    niceness, parent = int(sys.argv[1]), int(sys.argv[2])
    _die_with_parent()
    if os.getppid() != parent:  # the agent died before prctl took effect
        return
    with contextlib.suppress(OSError):  # lowering our niceness may need a privilege we lack
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    # Answers go on a private copy of stdout; stray prints from models go to stderr.
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the agent, which stops us
    serve(sys.stdin.buffer, outbox)


if __name__ == "__main__":
    main()
