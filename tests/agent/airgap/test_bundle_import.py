"""`tether agent import-bundle`: a good bundle applies offline; a bad one applies nothing.

Each hostile bundle below starts from a genuine one for a newer revision and changes one
thing. The import must refuse it whole: the accepted revision, what serves, the cache and the
rest of the disk stay exactly as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.airgap.bundle import AgentRunning, BundleRefused, import_bundle_file
from agent.local.state import StateStore
from common.cli import cli
from tests.agent.airgap.conftest import Site, members_of, write_tar
from tests.support.agent_world import desire


def snapshot(site: Site) -> dict:
    state = StateStore(site.data_dir).load()
    return {
        "accepted": state.accepted_revision,
        "applied": state.applied.model_dump() if state.applied else None,
        "cached": site.cached(),
        "partial": sorted(p.name for p in (site.data_dir / "artifacts" / "partial").iterdir()),
        "trust": (site.data_dir / "trust.json").read_bytes(),
    }


def test_a_bundle_applies_with_no_network_and_is_served(at_v1: Site, bundle_of, wine_example):
    bundle = bundle_of()
    with tarfile.open(bundle) as archive:
        names = archive.getnames()
    assert names[0] == "manifest.json" and len(names) == 2  # the manifest and v2's artifact
    result = at_v1.apply(bundle)
    assert result.outcome is not None
    assert (result.outcome.swapped, result.outcome.failed) == (["wine"], {})
    assert len(result.cached) == 1
    assert at_v1.serving() == {"wine": 2}
    state = StateStore(at_v1.data_dir).load()
    assert state.applied.revision == state.accepted_revision == result.manifest.revision  # type: ignore[union-attr]
    assert state.actual["wine"].status == "ok" and state.last_error is None


def test_the_same_bundle_twice_changes_nothing(at_v1: Site, bundle_of):
    bundle = bundle_of()
    at_v1.apply(bundle)
    again = at_v1.apply(bundle)
    assert again.cached == [] and again.outcome is not None and again.outcome.swapped == []
    assert again.checked == again.reused and len(again.checked) == 1  # hashed, though cached
    assert at_v1.serving() == {"wine": 2}


def rewrite(bundle: Path, change: Callable[[list, dict], list]) -> Path:
    """Rebuild `bundle` with `change(members, manifest)` applied to its member list."""
    members = members_of(bundle)
    manifest = json.loads(members[0][1])
    return write_tar(bundle.with_name("hostile.tar"), change(members, manifest))


def artifact_of(manifest: dict) -> tuple[str, int]:
    artifact = manifest["manifest"]["models"]["wine"]["primary"]["artifact"]
    return artifact["sha256"], artifact["size"]


def info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = ""
) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.size, member.linkname = kind, size, link
    return member


def with_member(member: tarfile.TarInfo, data: bytes = b"") -> Callable[[list, dict], list]:
    return lambda members, manifest: [*members, (member, data)]


def replacing_artifact(extra: bytes = b"", flip: bool = False) -> Callable[[list, dict], list]:
    def change(members: list, manifest: dict) -> list:
        digest, _ = artifact_of(manifest)
        out = []
        for member, data in members:
            if member.name == f"sha256/{digest}":
                data = (bytes([data[0] ^ 1]) + data[1:] if flip else data) + extra
                member.size = len(data)
            out.append((member, data))
        return out

    return change


def linking(kind: bytes, target: str) -> Callable[[list, dict], list]:
    def change(members: list, manifest: dict) -> list:
        digest, _ = artifact_of(manifest)
        kept = [m for m in members if m[0].name != f"sha256/{digest}"]
        return [*kept, (info(f"sha256/{digest}", kind, link=target), b"")]

    return change


JUNK = b"not named by the manifest"
HOSTILE = [
    ("dotdot", with_member(info("sha256/../../escaped", size=4), b"evil"), "climbs out"),
    ("absolute", with_member(info("/tmp/tether-escaped", size=4), b"evil"), "absolute path"),
    ("symlink", linking(tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    ("hardlink", linking(tarfile.LNKTYPE, "manifest.json"), "is a link"),
    ("device", with_member(info("sha256/" + "0" * 64, tarfile.CHRTYPE)), "not a regular file"),
    ("directory", with_member(info("sha256", tarfile.DIRTYPE)), "not a regular file"),
    (
        "unnamed-digest",
        with_member(info("sha256/" + hashlib.sha256(JUNK).hexdigest(), size=len(JUNK)), JUNK),
        "not named by the manifest",
    ),
    ("other-name", with_member(info("README", size=2), b"hi"), "is not named sha256/"),
    ("larger-than-declared", replacing_artifact(extra=b"Z" * 10_000), "larger than the"),
    ("smaller-than-declared", lambda m, _: [*m[:-1], (_shrunk(m[-1]), m[-1][1][:-1])], "smaller"),
    ("missing-file", lambda members, _: members[:1], "lacks 1 file"),
    ("manifest-not-first", lambda members, _: members[::-1], "not manifest.json"),
    ("digest-mismatch", replacing_artifact(flip=True), "expected"),
]


def _shrunk(member: tuple[tarfile.TarInfo, bytes]) -> tarfile.TarInfo:
    member[0].size -= 1
    return member[0]


@pytest.mark.parametrize(
    ("change", "reason"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_a_hostile_bundle_is_refused_whole(at_v1: Site, bundle_of, tmp_path, change, reason):
    before = snapshot(at_v1)
    hostile = rewrite(bundle_of(), change)
    with pytest.raises(BundleRefused, match=reason):
        at_v1.apply(hostile)
    assert snapshot(at_v1) == before
    assert at_v1.serving() == {"wine": 1}
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/tether-escaped").exists()
    assert reason in (StateStore(at_v1.data_dir).load().last_error or "")


@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_a_tampered_member_is_refused_though_the_cache_holds_it(
    at_v1: Site, bundle_of, api, as_json
):
    """The member is not needed (v1 is cached), but a bad medium must not pass for a sound one."""
    desire(api, "wine", 1)  # a newer revision naming v1, whose artifact the site holds
    hostile = rewrite(bundle_of(), replacing_artifact(flip=True))
    before = snapshot(at_v1)
    result = CliRunner().invoke(
        cli,
        ["agent", "import-bundle", str(hostile), "--data-dir", str(at_v1.data_dir)]
        + (["--json"] if as_json else []),
        env={"TETHER_MODE": "offline", "TETHER_FREE_DISK_RESERVE_BYTES": "0"},
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "bundle refused, nothing applied: member 'sha256/" in result.output
    assert "the bundle is damaged or tampered with" in result.output
    assert snapshot(at_v1) == before  # the revision is not accepted, the cached copy is kept
    assert at_v1.serving() == {"wine": 1}
    assert "damaged or tampered" in (StateStore(at_v1.data_dir).load().last_error or "")


@pytest.mark.parametrize("kind", ["a character device", "a FIFO"])
def test_a_device_or_a_fifo_is_refused_before_a_byte_is_read(at_v1: Site, tmp_path, kind):
    """/dev/zero never ends; a FIFO nobody writes to would make the import wait forever."""
    path = tmp_path / "not-a-file.tar"
    if kind == "a FIFO":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    before = snapshot(at_v1)
    with pytest.raises(BundleRefused, match=f"it is {kind}, not a regular file"):
        at_v1.apply(path)
    assert snapshot(at_v1) == before
    assert at_v1.serving() == {"wine": 1}


def test_a_huge_pax_header_is_refused_before_tarfile_reads_it(at_v1: Site, bundle_of):
    bloated = info("sha256/" + "1" * 64, size=1)
    bloated.pax_headers = {"comment": "x" * 200_000}
    hostile = rewrite(bundle_of(), with_member(bloated, b"x"))
    with pytest.raises(BundleRefused, match="metadata header"):
        at_v1.apply(hostile)
    assert at_v1.serving() == {"wine": 1}


def test_a_broken_header_after_a_pax_header_is_refused(at_v1: Site, bundle_of):
    """tarfile raises ReadError mid-archive there, not where the archive is opened."""
    extra = info("sha256/" + "2" * 64, size=1)
    extra.pax_headers = {"comment": "x"}
    hostile = rewrite(bundle_of(), with_member(extra, b"x"))
    with tarfile.open(hostile) as archive:
        last = archive.getmembers()[-1]
    raw = bytearray(hostile.read_bytes())
    header = last.offset_data - tarfile.BLOCKSIZE  # the member's own header, after the pax one
    raw[header + 148 : header + 156] = b"garbage!"  # its checksum
    hostile.write_bytes(bytes(raw))
    with pytest.raises(BundleRefused, match="not a valid tar file"):
        at_v1.apply(hostile)
    assert at_v1.serving() == {"wine": 1}


def test_a_bundle_with_a_tampered_manifest_is_refused(at_v1: Site, bundle_of):
    def tamper(members: list, manifest: dict) -> list:
        manifest["manifest"]["models"]["wine"]["primary"]["version"] = 7
        head, data = members[0]
        data = json.dumps(manifest).encode()
        head.size = len(data)
        return [(head, data), *members[1:]]

    before = snapshot(at_v1)
    with pytest.raises(BundleRefused, match="no signature verifies"):
        at_v1.apply(rewrite(bundle_of(), tamper))
    assert snapshot(at_v1)["accepted"] == before["accepted"]
    actual = StateStore(at_v1.data_dir).load().actual["wine"]
    assert (actual.serving, actual.status, actual.stage) == (1, "failed", "manifest")
    assert at_v1.serving() == {"wine": 1}


def test_an_older_bundle_is_refused(at_v1: Site, bundle_of, api):
    old = bundle_of()  # revision of v2
    desire(api, "wine", 1)
    at_v1.apply(bundle_of())  # a newer revision, back to v1
    with pytest.raises(BundleRefused, match="older than revision"):
        at_v1.apply(old)
    assert at_v1.serving() == {"wine": 1}


def test_another_environments_bundle_is_refused(at_v1: Site, bundle_of, api):
    api.create_env("staging")
    desire(api, "wine", 2, env="staging")
    with pytest.raises(BundleRefused, match="'staging'"):
        at_v1.apply(bundle_of("staging"))
    assert at_v1.serving() == {"wine": 1}


def test_an_expired_bundle_is_refused(at_v1: Site, bundle_of, api, app):
    def expire(members: list, manifest: dict) -> list:
        from common.schemas import Manifest

        body = manifest["manifest"]
        body["expires_at"] = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        canonical = Manifest.model_validate(body).model_dump(mode="json")
        keys = app.extensions["tether"].keys.current()
        manifest["manifest"] = canonical
        manifest["signatures"] = [s.model_dump() for s in keys.sign(canonical)]
        data = json.dumps(manifest).encode()
        members[0][0].size = len(data)
        return [(members[0][0], data), *members[1:]]

    with pytest.raises(BundleRefused, match="expired at"):
        at_v1.apply(rewrite(bundle_of(), expire))
    assert at_v1.serving() == {"wine": 1}


def test_a_model_that_fails_to_load_keeps_the_old_one(at_v1: Site, bundle_of, api, push):
    push(b"not a model at all")
    desire(api, "wine", 3)
    result = at_v1.apply(bundle_of())
    assert result.outcome is not None and "wine" in result.outcome.failed
    state = StateStore(at_v1.data_dir).load()
    assert state.actual["wine"].stage == "load"
    assert state.accepted_revision > state.applied.revision  # type: ignore[union-attr]
    assert at_v1.serving() == {"wine": 1}


def test_the_cli_reports_a_refusal_and_exits_1(at_v1: Site, bundle_of):
    hostile = rewrite(bundle_of(), replacing_artifact(extra=b"Z"))
    result = CliRunner().invoke(
        cli,
        ["agent", "import-bundle", str(hostile), "--data-dir", str(at_v1.data_dir)],
        env={"TETHER_MODE": "offline", "TETHER_FREE_DISK_RESERVE_BYTES": "0"},
    )
    assert result.exit_code == 1
    assert "bundle refused, nothing applied" in result.output and "larger than" in result.output


def test_the_cli_applies_a_bundle(at_v1: Site, bundle_of):
    result = CliRunner().invoke(
        cli,
        ["agent", "import-bundle", str(bundle_of()), "--data-dir", str(at_v1.data_dir), "--json"],
        env={"TETHER_FREE_DISK_RESERVE_BYTES": "0"},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["swapped"] == ["wine"] and summary["cached"] == 1 and summary["failed"] == {}
    assert at_v1.serving() == {"wine": 2}


def test_the_direct_import_refuses_while_the_agent_runs(at_v1: Site, bundle_of):
    """The agent applies it then (agent.airgap.inbox, tests/agent/airgap/test_bundle_inbox.py)."""
    from agent.daemon import AgentDaemon

    daemon = AgentDaemon(at_v1.settings, serve=False)
    daemon.start()
    try:
        with pytest.raises(AgentRunning, match="is running on") as refused:
            import_bundle_file(bundle_of(), at_v1.settings)
        assert refused.value.pid == os.getpid()  # the agent runs in this test's process
    finally:
        daemon.stop(timeout=2)
    assert at_v1.serving() == {"wine": 1}
    assert at_v1.apply(bundle_of()).outcome.swapped == ["wine"]  # type: ignore[union-attr]
