"""The artifact cache: verified, resumable downloads that never keep a wrong byte."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import httpx
import pytest

from agent.local.cache import (
    ArtifactCache,
    DownloadCancelled,
    InsufficientDisk,
    VerificationFailed,
)
from agent.sync.client import ControlPlaneClient, Unreachable
from tests.agent.fakes import ArtifactServer

SIZE = 1_000_000
BODY = os.urandom(SIZE)
DIGEST = hashlib.sha256(BODY).hexdigest()


def cache_in(tmp_path: Path, **kwargs) -> ArtifactCache:
    cache = ArtifactCache(tmp_path / "artifacts", reserve_bytes=0, chunk_bytes=64 * 1024, **kwargs)
    cache.prepare()
    return cache


def opener_for(server: ArtifactServer):
    client = ControlPlaneClient("http://cp.test", "token", transport=httpx.MockTransport(server))
    return lambda offset: client.download("wine", 1, offset)


def test_download_is_verified_then_renamed_into_place(tmp_path):
    cache = cache_in(tmp_path)
    path = cache.get(DIGEST, SIZE, opener_for(ArtifactServer(BODY)))
    assert path == tmp_path / "artifacts" / "sha256" / DIGEST
    assert path.read_bytes() == BODY
    assert list(cache.partial.iterdir()) == []


def test_a_verified_file_is_not_downloaded_again(tmp_path):
    cache = cache_in(tmp_path)
    server = ArtifactServer(BODY)
    cache.get(DIGEST, SIZE, opener_for(server))
    cache.get(DIGEST, SIZE, opener_for(server))
    assert len(server.requests) == 1


def test_a_cut_download_resumes_from_its_offset(tmp_path):
    cache = cache_in(tmp_path)
    cut = 300_000
    server = ArtifactServer(BODY, cut_after=cut)
    opener = opener_for(server)
    with pytest.raises(Unreachable, match="connection reset"):
        cache.get(DIGEST, SIZE, opener)
    part = cache.part_path(DIGEST)
    assert part.stat().st_size == cut  # everything received was kept
    assert not cache.has(DIGEST, SIZE)

    path = cache.get(DIGEST, SIZE, opener)
    assert server.ranges() == [None, f"bytes={cut}-"]
    assert server.sent()[1] == SIZE - cut  # the second request fetched only the remainder
    assert path.read_bytes() == BODY
    assert not part.exists()


def test_a_resume_onto_a_corrupted_prefix_is_refused(tmp_path):
    """The prefix already on disk is hashed again, so a bad byte there is caught at the end."""
    cache = cache_in(tmp_path)
    cache.part_path(DIGEST).write_bytes(b"X" + BODY[1:400_000])
    server = ArtifactServer(BODY)
    with pytest.raises(VerificationFailed):
        cache.get(DIGEST, SIZE, opener_for(server))
    assert server.ranges() == ["bytes=400000-"]
    assert not cache.part_path(DIGEST).exists()
    assert not cache.has(DIGEST, SIZE)


def test_a_server_ignoring_range_restarts_the_download(tmp_path):
    cache = cache_in(tmp_path)
    cache.part_path(DIGEST).write_bytes(BODY[:123_456])
    server = ArtifactServer(BODY, ignore_range=True)
    path = cache.get(DIGEST, SIZE, opener_for(server))
    assert server.ranges() == ["bytes=123456-"]
    assert path.read_bytes() == BODY


def test_wrong_bytes_are_refused_and_nothing_is_kept(tmp_path):
    cache = cache_in(tmp_path)
    wrong = bytearray(BODY)
    wrong[SIZE // 2] ^= 0xFF
    with pytest.raises(VerificationFailed, match="discarded"):
        cache.get(DIGEST, SIZE, opener_for(ArtifactServer(bytes(wrong))))
    assert list(cache.by_digest.iterdir()) == []
    assert list(cache.partial.iterdir()) == []


def test_a_short_body_is_kept_for_a_resume(tmp_path):
    cache = cache_in(tmp_path)
    server = ArtifactServer(BODY[:500_000])
    with pytest.raises(Exception, match="ended at byte 500000"):
        cache.get(DIGEST, SIZE, opener_for(server))
    assert cache.part_path(DIGEST).stat().st_size == 500_000


@pytest.mark.parametrize("correct_prefix", [True, False])
def test_an_oversized_body_stops_at_the_declared_size(tmp_path, correct_prefix):
    cache = cache_in(tmp_path)
    body = BODY if correct_prefix else b"Y" + BODY[1:]
    server = ArtifactServer(body, extra=b"Z" * 5_000_000)
    written: list[int] = []
    real_writev = os.writev

    def counting_writev(fd, buffers):
        written.append(sum(len(memoryview(b)) for b in buffers))
        return real_writev(fd, buffers)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("agent.local.cache.os.writev", counting_writev)
        if correct_prefix:
            path = cache.get(DIGEST, SIZE, opener_for(server))
            assert path.read_bytes() == BODY
        else:
            with pytest.raises(VerificationFailed):
                cache.get(DIGEST, SIZE, opener_for(server))
    assert sum(written) == SIZE  # not one byte past the declared size reached the disk
    assert server.sent()[0] < SIZE + 5_000_000  # and the rest of the body was never read


def test_a_download_that_would_eat_the_disk_reserve_is_refused(tmp_path):
    cache = cache_in(tmp_path)
    free = __import__("shutil").disk_usage(tmp_path).free
    cache.reserve_bytes = free - SIZE // 2  # room for half the artifact above the reserve
    server = ArtifactServer(BODY)
    with pytest.raises(InsufficientDisk, match="free_disk_reserve_bytes"):
        cache.get(DIGEST, SIZE, opener_for(server))
    assert server.requests == []  # refused before asking for a byte


def test_cancelling_keeps_the_part_file(tmp_path):
    cache = cache_in(tmp_path)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DownloadCancelled):
        cache.get(DIGEST, SIZE, opener_for(ArtifactServer(BODY)), cancel=cancel)
    assert 0 < cache.part_path(DIGEST).stat().st_size < SIZE


def test_a_file_changed_on_disk_is_caught_and_fetched_again(tmp_path):
    cache = cache_in(tmp_path)
    server = ArtifactServer(BODY)
    path = cache.get(DIGEST, SIZE, opener_for(server))
    fresh = cache_in(tmp_path)  # a new process: nothing verified yet
    path.write_bytes(b"!" + BODY[1:])
    with pytest.raises(VerificationFailed, match="changed on disk"):
        fresh.verify(DIGEST, SIZE)
    assert not path.exists()
    path.write_bytes(b"!" + BODY[1:])
    assert fresh.get(DIGEST, SIZE, opener_for(server)).read_bytes() == BODY
    assert len(server.requests) == 2


def test_a_file_changed_on_disk_after_this_process_verified_it_is_hashed_again(tmp_path):
    cache = cache_in(tmp_path)
    server = ArtifactServer(BODY)
    path = cache.get(DIGEST, SIZE, opener_for(server))
    with open(path, "r+b") as handle:  # same size, same inode: only the bytes changed
        handle.write(b"!")
    assert cache.get(DIGEST, SIZE, opener_for(server)).read_bytes() == BODY
    assert len(server.requests) == 2
    cache.get(DIGEST, SIZE, opener_for(server))  # unchanged since: not hashed nor fetched again
    assert len(server.requests) == 2


def test_prune_removes_what_is_not_kept(tmp_path):
    cache = cache_in(tmp_path)
    for name in ("a" * 64, "b" * 64, "c" * 64):
        cache.path(name).write_bytes(b"x")
    cache.part_path("d" * 64).write_bytes(b"x")
    cache.part_path("a" * 64).write_bytes(b"x")
    removed = cache.prune({"a" * 64, "b" * 64})
    assert sorted(removed) == ["c" * 64, "d" * 64]
    assert sorted(p.name for p in cache.by_digest.iterdir()) == ["a" * 64, "b" * 64]
    assert [p.name for p in cache.partial.iterdir()] == ["a" * 64 + ".part"]


def test_the_real_control_plane_serves_ranges_the_cache_resumes_from(
    tmp_path, api, transport, wine_model_bytes
):
    """The same resume against the real artifact endpoint (send_file's Range support)."""
    api.create_env("production")
    version = api.operator.push("wine", wine_model_bytes)
    api.set_desired("production", "wine", version["version"])
    agent = api.enroll("production")
    digest, size = version["artifact"]["sha256"], version["artifact"]["size"]
    cache = cache_in(tmp_path)
    cache.part_path(digest).write_bytes(wine_model_bytes[: size // 3])
    seen: list[httpx.Response] = []

    def record(request: httpx.Request) -> httpx.Response:
        response = transport.handle_request(request)
        seen.append(response)
        return response

    client = ControlPlaneClient(
        "http://cp.test",
        agent["token"],
        agent_id=agent["agent_id"],
        transport=httpx.MockTransport(record),
    )
    path = cache.get(digest, size, lambda offset: client.download("wine", 1, offset))
    assert path.read_bytes() == wine_model_bytes
    assert seen[0].status_code == 206
    assert int(seen[0].headers["Content-Length"]) == size - size // 3


class ReaderStream:
    """A stream offering `readinto`, like the body transport's, over bytes; may fail after `cut`."""

    def __init__(self, body: bytes, offset: int, cut: int | None = None) -> None:
        self.data = memoryview(body)[offset:]
        self.offset = offset
        self.cut = cut
        self.position = 0
        self.asked: list[int] = []

    @property
    def readinto(self):  # type: ignore[no-untyped-def]
        def read(buffer: memoryview) -> int:
            self.asked.append(len(buffer))
            if self.cut is not None and self.position >= self.cut:
                raise httpx.ReadError("connection reset by peer")
            end = len(self.data) if self.cut is None else min(len(self.data), self.cut)
            count = min(len(buffer), end - self.position, 100_000)
            buffer[:count] = self.data[self.position : self.position + count]
            self.position += count
            return count

        return read

    def chunks(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the readinto path should be taken")

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc):  # type: ignore[no-untyped-def]
        return None


def test_readinto_path_downloads_resumes_and_verifies(tmp_path):
    cache = cache_in(tmp_path)
    streams: list[ReaderStream] = []

    def opener(offset: int) -> ReaderStream:
        streams.append(ReaderStream(BODY, offset, cut=250_000 if not streams else None))
        return streams[-1]

    with pytest.raises(httpx.ReadError):
        cache.get(DIGEST, SIZE, opener)
    assert cache.part_path(DIGEST).stat().st_size == 250_000
    path = cache.get(DIGEST, SIZE, opener)
    assert streams[1].offset == 250_000 and streams[1].position == SIZE - 250_000
    assert path.read_bytes() == BODY


def test_readinto_path_never_asks_past_the_declared_size(tmp_path):
    cache = cache_in(tmp_path)
    padded = BODY + b"Z" * 1_000_000
    stream = ReaderStream(padded, 0)
    path = cache.get(DIGEST, SIZE, lambda offset: stream)
    assert path.stat().st_size == SIZE
    assert sum(stream.asked) <= SIZE + 64 * 1024  # asked for at most what was still missing
    assert stream.position == SIZE


def test_readinto_path_refuses_wrong_bytes(tmp_path):
    cache = cache_in(tmp_path)
    wrong = b"W" + BODY[1:]
    with pytest.raises(VerificationFailed):
        cache.get(DIGEST, SIZE, lambda offset: ReaderStream(wrong, offset))
    assert list(cache.by_digest.iterdir()) == [] and list(cache.partial.iterdir()) == []
