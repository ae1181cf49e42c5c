"""Local state: atomic writes, a private identity, a corrupt file set aside."""

from __future__ import annotations

import errno
import json
import stat

import pytest

from agent.local.state import AgentState, Applied, Identity, StateStore, read_state_file
from common.clock import utcnow


def test_identity_is_private(tmp_path):
    store = StateStore(tmp_path / "agent")
    store.save_identity(
        Identity(
            agent_id="agt_1",
            token="secret",
            url="http://x",
            environment="prod",
            hostname="h",
            enrolled_at=utcnow(),
        )
    )
    assert stat.S_IMODE(store.identity_path.stat().st_mode) == 0o600
    assert store.load_identity().token == "secret"  # type: ignore[union-attr]


def test_state_is_written_atomically_and_read_back(tmp_path):
    store = StateStore(tmp_path)
    with store.edit() as state:
        state.applied = Applied(environment="prod", revision=3)
        state.accepted_revision = 3
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left
    assert json.loads((tmp_path / "state.json").read_text())["applied"]["revision"] == 3
    assert StateStore(tmp_path).load().accepted_revision == 3
    assert read_state_file(tmp_path).applied.revision == 3  # type: ignore[union-attr]


def test_a_failed_edit_changes_nothing(tmp_path):
    store = StateStore(tmp_path)
    with store.edit() as state:
        state.accepted_revision = 1
    try:
        with store.edit() as state:
            state.accepted_revision = 2
            raise RuntimeError("interrupted")
    except RuntimeError:
        pass
    assert store.load().accepted_revision == 1
    assert StateStore(tmp_path).load().accepted_revision == 1


def test_bookkeeping_survives_a_full_disk_but_a_durable_change_does_not_pretend(
    tmp_path, monkeypatch
):
    store = StateStore(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("agent.local.state.write_atomic", full)
    with store.edit(durable=False) as state:
        state.reachable = False
    assert store.load().reachable is False  # kept in memory
    with pytest.raises(OSError, match="No space"), store.edit() as state:
        state.accepted_revision = 3


def test_a_corrupt_state_file_is_set_aside(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    assert StateStore(tmp_path).load() == AgentState()
    assert [p.name.startswith("state.json.corrupt-") for p in tmp_path.iterdir()] == [True]


def test_load_returns_a_copy(tmp_path):
    store = StateStore(tmp_path)
    copy = store.load()
    copy.accepted_revision = 9
    assert store.load().accepted_revision == 0
