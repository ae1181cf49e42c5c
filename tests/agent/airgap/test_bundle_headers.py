"""Hostile tar headers in a bundle: each is refused before `tarfile` acts on it.

Each bundle below is a genuine one for a newer revision with raw tar headers spliced in (at
the start, in front of the artifact, or after it), the way an attacker who holds the USB stick
would write them: headers `tarfile` reads whole into memory, recurses on, or seeks by. The
import must refuse it with a message naming the problem, no traceback, and change nothing.
"""

from __future__ import annotations

import os
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.airgap.bundle import BundleRefused
from agent.airgap.bundle_tar import MAX_MEMBERS
from common.cli import cli
from tests.agent.airgap.conftest import Site
from tests.agent.airgap.test_bundle_import import snapshot

BLOCK = tarfile.BLOCKSIZE
MIB = 1024 * 1024


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def header(
    kind: bytes, size: int, name: str = "sha256/" + "e" * 64, fmt: int = tarfile.GNU_FORMAT
) -> bytes:
    """One raw tar header block; GNU format writes a size past the octal field in base-256."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=fmt)


def entry(kind: bytes, data: bytes, name: str = "././@PaxHeader") -> bytes:
    """A header and its data, padded."""
    return header(kind, len(data), name) + padded(data)


def record(keyword: str, value: bytes | str) -> bytes:
    """One pax record, `"%d %s=%s\\n"`, its length counting itself."""
    body = b" " + keyword.encode() + b"=" + (value if isinstance(value, bytes) else value.encode())
    body += b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def pax(*records: bytes, kind: bytes = tarfile.XHDTYPE) -> bytes:
    return entry(kind, b"".join(records))


def with_field(block: bytes, start: int, value: bytes) -> bytes:
    """Overwrite a field of a header block and give it a valid checksum again."""
    raw = bytearray(block)
    raw[start : start + len(value)] = value
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\0 " % sum(raw)
    return bytes(raw)


def splice(bundle: Path, start: bytes = b"", before: bytes = b"", after: bytes = b"") -> Path:
    """Write the bundle again with raw bytes at its start, in front of its artifact, after it."""
    raw = bundle.read_bytes()
    with tarfile.open(bundle) as archive:
        artifact = archive.getmembers()[1]
    begin = artifact.offset
    end = artifact.offset_data + -(-artifact.size // BLOCK) * BLOCK
    hostile = raw[:begin] + before + raw[begin:end] + after + b"\0" * (2 * BLOCK)
    path = bundle.with_name("hostile.tar")
    path.write_bytes(start + hostile)
    return path


def chain(piece: bytes, count: int) -> bytes:
    return piece * count


def damaged(block: bytes) -> bytes:
    """The block with a checksum that is a number, but the wrong one (a bit flipped on the way)."""
    return block[:148] + b"%06o\0 " % 1 + block[156:]


def records_in_padding() -> bytes:
    """A pax header whose padding holds a record: tarfile parses it, though past the size."""
    declared = record("comment", "x")
    return header(tarfile.XHDTYPE, len(declared)) + padded(declared + record("path", "evil"))


def members(count: int) -> bytes:
    return b"".join(header(tarfile.REGTYPE, 0, f"sha256/{i:064x}") for i in range(count))


HOSTILE_HEADERS = [
    # 1. Every header type tarfile reads whole is capped, Solaris pax (X) included.
    (
        "solaris-pax-over-the-cap",
        {"start": pax(record("comment", "x" * 200_000), kind=tarfile.SOLARIS_XHDTYPE)},
        "-byte tar metadata header (type 'X')",
    ),
    ("long-name-over-the-cap", {"before": entry(b"L", b"n" * 70_000)}, "tar metadata header"),
    ("long-link-over-the-cap", {"before": entry(b"K", b"n" * 70_000)}, "tar metadata header"),
    ("pax-global-header", {"start": pax(record("comment", "x"), kind=b"g")}, "global header"),
    (
        "gnu-sparse-member",
        {"after": header(tarfile.GNUTYPE_SPARSE, 0) + b"\0" * BLOCK},
        "a GNU sparse file",
    ),
    ("contiguous-file", {"after": header(tarfile.CONTTYPE, 0)}, "a contiguous file"),
    ("fifo", {"after": header(tarfile.FIFOTYPE, 0)}, "not a regular file: it is a FIFO"),
    ("unknown-type", {"after": header(b"V", 0)}, "an unknown tar type b'V'"),
    (
        "pax-sparse-map",
        {"before": pax(record("GNU.sparse.map", "0,1,not-a-number"))},
        "describes a sparse file",
    ),
    (
        "pax-sparse-1.0",
        {"before": pax(record("GNU.sparse.major", "1"), record("GNU.sparse.minor", "0"))},
        "describes a sparse file",
    ),
    ("pax-bad-hdrcharset", {"before": pax(record("hdrcharset", b"\xff\xfe"))}, "hdrcharset"),
    ("pax-record-of-length-0", {"before": pax(b"0 comment=x\n")}, "malformed pax record"),
    ("pax-record-too-long", {"before": pax(b"9" * 5000 + b" a=b\n")}, "malformed pax record"),
    ("pax-size-not-a-number", {"before": pax(record("size", "1_000"))}, "not a number"),
    ("pax-records-in-padding", {"before": records_in_padding()}, "has data in its padding"),
    # 2. Chains of metadata headers: tarfile recursed once per header (RecursionError).
    ("pax-chain-3000", {"before": chain(pax(record("comment", "x")), 3000)}, "two pax"),
    ("long-name-chain-3000", {"before": chain(entry(b"L", b"n" * 10), 3000)}, "two GNU long"),
    (
        "solaris-and-posix-pax",
        {"before": pax(record("comment", "x"), kind=b"X") + pax(record("comment", "y"))},
        "two pax tar metadata headers for one member",
    ),
    ("metadata-with-no-member", {"after": pax(record("comment", "x"))}, "no member after it"),
    # 2. A size past the end of the file: tarfile seeked there (OSError: Invalid argument).
    ("base-256-size-of-10**15", {"after": header(b"0", 10**15)}, "declares 1000000000000000"),
    ("pax-size-of-10**15", {"before": pax(record("size", str(10**15)))}, "declares 10000000"),
    (
        "negative-base-256-size",
        {"after": with_field(header(b"0", 0), 124, b"\xff" * 12)},
        "negative size",
    ),
    ("damaged-header", {"after": damaged(header(b"0", 0))}, "is damaged (bad checksum)"),
    ("too-many-members", {"after": members(MAX_MEMBERS)}, f"more than {MAX_MEMBERS} members"),
]


@pytest.mark.parametrize(
    ("where", "reason"), [c[1:] for c in HOSTILE_HEADERS], ids=[c[0] for c in HOSTILE_HEADERS]
)
def test_a_bundle_with_hostile_tar_headers_is_refused_cleanly(
    at_v1: Site, bundle_of, where, reason
):
    before = snapshot(at_v1)
    hostile = splice(bundle_of(), **where)
    result = CliRunner().invoke(
        cli,
        ["agent", "import-bundle", str(hostile), "--data-dir", str(at_v1.data_dir)],
        env={"TETHER_MODE": "offline", "TETHER_FREE_DISK_RESERVE_BYTES": "0"},
    )
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a refusal, not a RecursionError or OSError
    assert "Traceback" not in result.output
    assert "bundle refused, nothing applied:" in result.output and reason in result.output
    assert snapshot(at_v1) == before
    assert at_v1.serving() == {"wine": 1}


def test_a_96_mib_solaris_pax_header_is_refused_before_tarfile_reads_it(
    at_v1: Site, bundle_of, monkeypatch
):
    """The audit's case: in front of a genuine bundle it raised the agent's RSS by 288 MiB."""
    genuine = bundle_of()
    hostile = genuine.with_name("solaris.tar")
    size = 96 * MIB
    with open(hostile, "wb") as handle:
        handle.write(header(tarfile.SOLARIS_XHDTYPE, size, "././@PaxHeader"))
        handle.seek(size, os.SEEK_CUR)  # sparse: the disk holds none of it
        handle.write(genuine.read_bytes())

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("tarfile opened the bundle")

    monkeypatch.setattr(tarfile, "open", never)
    before = snapshot(at_v1)
    tracemalloc.start()
    try:
        with pytest.raises(BundleRefused, match=r"100663296-byte tar metadata header \(type 'X'\)"):
            at_v1.apply(hostile)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB, f"the refusal took {peak / MIB:.1f} MiB"
    monkeypatch.undo()
    assert snapshot(at_v1) == before
    assert at_v1.serving() == {"wine": 1}
