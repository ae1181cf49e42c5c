"""`mode = "offline"`: the agent serves and reports, and never opens a connection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from agent.daemon import AgentDaemon
from agent.local.state import StateStore
from tests.agent.airgap.conftest import Site
from tests.support.agent_world import desire, fast_settings, identity_of


class CountingListener:
    """A TCP listener that counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()  # the agent sees a dropped connection and backs off

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@contextmanager
def listening() -> Iterator[CountingListener]:
    listener = CountingListener()
    try:
        yield listener
    finally:
        listener.close()


def run_for(data_dir: Path, enrolled: dict, url: str, seconds: float, **settings) -> None:
    daemon = AgentDaemon(
        fast_settings(data_dir, url=url, **settings),
        identity=identity_of(enrolled, url=url),
        serve=False,
    )
    daemon.start()
    try:
        time.sleep(seconds)  # an online agent polls 20 times a second with these settings
    finally:
        daemon.stop(timeout=2)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_an_offline_agent_never_opens_a_connection(tmp_path, enrolled, mode):
    with listening() as listener:
        run_for(tmp_path / "agent", enrolled, listener.url, 1.0, mode=mode)
        time.sleep(0.1)
    if mode == "offline":
        assert listener.connections == 0
    else:
        assert listener.connections > 0  # the listener does count: an online agent polls it


def test_an_offline_agent_serves_an_imported_bundle(
    api, push, site: Site, bundle_of, wine_model_bytes, wine_example, enrolled
):
    push(wine_model_bytes)
    desire(api, "wine", 1)
    site.apply(bundle_of())
    with listening() as listener:
        daemon = AgentDaemon(
            site.settings.model_copy(update={"url": listener.url}),
            identity=identity_of(enrolled, url=listener.url),
            serve=True,
        )
        daemon.start()
        try:
            assert daemon.server is not None
            answer = httpx.post(
                f"{daemon.server.url}/predict/wine", json={"instances": wine_example}, timeout=10
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == 1 and len(answer.json()["predictions"]) == 3
            assert daemon.is_ready()
        finally:
            daemon.stop(timeout=2)
    assert listener.connections == 0
    assert StateStore(site.data_dir).load().actual["wine"].status == "ok"
