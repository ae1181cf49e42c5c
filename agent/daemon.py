"""Wire the agent together and run it until SIGTERM or SIGINT.

Start-up needs no network: the models of the last applied state are loaded from the cache
(their digests checked again) and served before the first poll, which then keeps trying the
control plane with backoff. Stopping cancels a download (its part file stays for the resume),
lets in-flight inference requests finish and exits within `STOP_TIMEOUT` seconds.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from types import FrameType

import httpx

from agent.airgap.inbox import InboxWatcher
from agent.errors import AgentError
from agent.local.cache import ArtifactCache
from agent.local.datadir import DataDirLock, DataDirLocked, artifacts_dir, outbox_path
from agent.local.outbox import Outbox
from agent.local.state import Identity, StateStore
from agent.metrics import AgentMetrics
from agent.reports.loop import ReportingLoop
from agent.serving.app import InferenceServer, create_inference_app
from agent.serving.slots import ModelSlots
from agent.settings import AgentSettings
from agent.sync.client import ControlPlaneClient
from agent.sync.poller import Poller
from agent.sync.reconciler import Reconciler
from agent.sync.transports import OfflineTransport

log = logging.getLogger("tether.agent")

STOP_TIMEOUT = 5.0


class NotEnrolled(AgentError):
    """The data directory holds no agent identity."""


class StartupError(AgentError):
    """The agent cannot start: its data dir is taken or unusable, or its port is."""


class AgentDaemon:
    """One agent: state, client, cache, slots, reconciler, poller, inbox and inference server."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        identity: Identity | None = None,
        transport: httpx.BaseTransport | None = None,
        serve: bool = True,
    ) -> None:
        self.settings = settings
        self.store = StateStore(settings.data_dir)
        found = identity or self.store.load_identity()
        if found is None:
            raise NotEnrolled(
                f"no agent identity in {settings.data_dir}: run `tether agent enroll` first"
            )
        self.identity = found
        # An air-gapped agent never opens a connection: its client refuses every request, and
        # no poller runs; bundles bring its models (agent.airgap.bundle).
        self.offline = settings.mode == "offline"
        self.client = ControlPlaneClient(
            settings.url or found.url,
            found.token,
            agent_id=found.agent_id,
            timeout=settings.request_timeout,
            transport=OfflineTransport() if self.offline else transport,
            tls=None if self.offline else settings.tls_files(found.tls),
        )
        self.cache = ArtifactCache(
            artifacts_dir(settings.data_dir),
            reserve_bytes=settings.free_disk_reserve_bytes,
            chunk_bytes=settings.download_chunk_bytes,
        )
        self.slots = ModelSlots()
        self.cancel = threading.Event()
        outbox = Outbox(outbox_path(settings.data_dir))
        self.metrics = AgentMetrics(outbox=outbox)
        profiles = self.metrics.count_downloads(
            lambda name, version, offset: self.client.download(
                name, version, offset, part="profile"
            ),
            part="profile",
        )
        self.reporting = ReportingLoop(
            state=self.store,
            cache=self.cache,
            outbox=outbox,
            profile_opener=profiles,
            send=None if self.offline else self.client.send_reports,
            interval=settings.report_interval,
            max_requests=settings.report_max_requests,
            queue_size=settings.shadow_queue_size,
        )
        self.metrics.watch_reporting(self.reporting)
        self.reconciler = Reconciler(
            state=self.store,
            cache=self.cache,
            slots=self.slots,
            opener=self.metrics.count_downloads(self.client.download),
            environment=found.environment,
            keep_versions=settings.keep_versions,
            retry_initial=settings.backoff_initial,
            retry_max=settings.backoff_max,
            cancel=self.cancel,
            on_swap=self.reporting.on_swap,
            clock_skew=settings.clock_skew,
        )
        # Bundles handed to the running agent (`tether agent import-bundle`), online or not.
        self.inbox = InboxWatcher(
            settings.data_dir, self.reconciler, max_bundle_bytes=settings.max_bundle_bytes
        )
        self.poller = Poller(
            client=self.client,
            reconciler=self.reconciler,
            state=self.store,
            settings=settings,
            hostname=found.hostname,
            labels=found.labels,
            on_poll=self.metrics.count_poll,
        )
        self.serve = serve
        self.server: InferenceServer | None = None
        self._stop_requested = threading.Event()
        self._stopped = False
        self._lock = DataDirLock(settings.data_dir)

    def is_ready(self) -> bool:
        """Tell whether every desired model has a version serving."""
        state = self.store.load()
        if state.manifest is not None:
            wanted = set(state.manifest.models)
        elif state.applied is not None:
            wanted = set(state.applied.models)
        else:
            return False  # never heard of a desired state: nothing to vouch for yet
        return all(name in self.slots for name in wanted)

    def start(self) -> None:
        """Serve what the cache holds, then start polling."""
        data_dir = self.settings.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_data_dir()
            self.cache.prepare()
            self.inbox.prepare()
        except OSError as error:
            raise StartupError(f"cannot use the data dir {data_dir}: {error}") from None
        restored = self.reconciler.restore()
        if restored:
            log.info("serving %d model(s) from the cache: %s", len(restored), ", ".join(restored))
        if self.serve:
            app = create_inference_app(
                self.slots,
                is_ready=self.is_ready,
                max_batch_rows=self.settings.max_batch_rows,
                on_prediction=self.metrics.on_prediction(self.reporting.on_prediction),
                on_feedback=self.reporting.on_feedback,
                metrics=self.metrics.scrape,
            )
            self.server = InferenceServer(
                app,
                host=self.settings.serve_host,
                port=self.settings.serve_port,
                threads=self.settings.serve_threads,
            )
            try:
                # Checked first: a failed bind inside waitress leaks its sockets.
                _check_port_free(self.settings.serve_host, self.settings.serve_port)
                self.server.start()
            except OSError as error:
                self.server = None
                raise StartupError(f"cannot listen on {self.settings.serve}: {error}") from None
        if not self.offline:
            self.poller.start()
        self.inbox.start()
        self.reporting.start()
        log.info(
            "agent %s (%s) %s%s",
            self.identity.agent_id,
            self.identity.environment,
            "offline: import bundles with `tether agent import-bundle`"
            if self.offline
            else f"polling {self.client.url}",
            f", serving on {self.server.url}" if self.server else "",
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop polling, cancel downloads, finish in-flight requests; return within `timeout`."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        self.cancel.set()
        self.poller.stop()
        self.inbox.stop()
        if self.server is not None:
            # Leave a little of the budget for the rest of the shutdown.
            self.server.stop(timeout=max(0.1, deadline - time.monotonic() - 0.5))
        if not self.poller.stop(timeout=max(0.0, deadline - time.monotonic() - 0.2)):
            log.warning("a control-plane request was still in flight at exit; abandoned it")
        if not self.inbox.stop(timeout=max(0.0, deadline - time.monotonic() - 0.2)):
            log.warning("a bundle from the inbox was still being applied at exit; it stays there")
        # The last window goes to the outbox (durable) first; sending it is best effort.
        self.reporting.stop(timeout=max(0.1, deadline - time.monotonic() - 0.2))
        self.client.close()
        self._lock.release()
        log.info("agent stopped")

    def _lock_data_dir(self) -> None:
        # Two agents on one data dir would fight over its state and cache.
        try:
            self._lock.acquire()
        except DataDirLocked as locked:
            holder = locked.pid or "another process"
            raise StartupError(
                f"another agent (pid {holder}) runs with the data dir {self.settings.data_dir}"
            ) from None

    def request_stop(self) -> None:
        """Ask `run_forever` to stop (safe from signal handlers and other threads)."""
        self._stop_requested.set()

    def run_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT (or request_stop), then stop cleanly."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.start()
            while not self._stop_requested.wait(1.0):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.request_stop()


def _check_port_free(host: str, port: int) -> None:
    """Raise OSError if nothing could listen on host:port right now."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the server will: a port in TIME_WAIT is free to listen on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
