"""Reports out and acknowledgements in, in process: signed exports, and acks that must verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.airgap.exports import OfflineError, apply_ack_file, write_report_export
from agent.local.outbox import Outbox
from agent.local.state import StateStore
from agent.local.trust import TrustStore, save_agent_key
from common.bundles import ReportAckFile, ReportExport
from common.cli import cli
from common.reports import Report
from common.signing import PublicKey, describe, sign, verify
from tests.support.agent_world import identity_of
from tests.support.reports import shadow_report


class OfflineSite:
    """An agent provisioned for an air-gapped site, its outbox holding `count` reports."""

    def __init__(self, api, env: str, data_dir: Path, count: int) -> None:
        self.key = Ed25519PrivateKey.generate()
        body = {"hostname": "edge-7", "public_key": describe(self.key.public_key()).model_dump()}
        answer = api.send("POST", f"/api/v1/environments/{env}/agents", body).get_json()
        self.agent_id = answer["agent_id"]
        self.data_dir = data_dir
        StateStore(data_dir).save_identity(identity_of(answer))
        TrustStore(data_dir).save([PublicKey(**k) for k in answer["signing_keys"]])
        save_agent_key(data_dir, self.key)
        self.reports = [
            Report.model_validate(shadow_report("wine", 1, 2, shadowed=10 + i, agreed=9))
            for i in range(count)
        ]
        self.outbox_put(self.reports)

    def outbox_put(self, reports: list[Report]) -> None:
        outbox = Outbox(self.data_dir / "outbox.db")
        outbox.put(reports)
        outbox.close()

    def depth(self) -> int:
        outbox = Outbox(self.data_dir / "outbox.db")
        try:
            return outbox.depth()
        finally:
            outbox.close()


@pytest.fixture
def site(api, env, tmp_path) -> OfflineSite:
    return OfflineSite(api, env, tmp_path / "site", count=4)


def imported(api, export_file: Path) -> dict:
    response = api.send("POST", "/api/v1/reports/import", json.loads(export_file.read_text()))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_export_is_signed_by_the_agent_and_leaves_the_outbox_alone(site, tmp_path):
    out = tmp_path / "reports.json"
    exported = write_report_export(site.data_dir, out)
    export = ReportExport.model_validate_json(out.read_text())
    assert [r.id for r in export.reports] == [r.id for r in site.reports]
    assert export.heartbeats and export.heartbeats[-1].hostname == "serving-1"
    assert export.signature is not None
    verify(
        export.signed_part(),
        [export.signature],
        {export.signature.key_id: describe(site.key.public_key())},
    )
    assert exported.left_behind == 0 and site.depth() == 4


def test_a_genuine_ack_clears_what_it_names_once(api, site, tmp_path):
    out = tmp_path / "reports.json"
    write_report_export(site.data_dir, out)
    ack_file = tmp_path / "ack.json"
    ack_file.write_text(json.dumps(imported(api, out)))
    late = Report.model_validate(shadow_report("wine", 1, 2, shadowed=1, agreed=1))
    site.outbox_put([late])  # arrived after the export: stays
    applied = apply_ack_file(site.data_dir, ack_file)
    assert (applied.removed, applied.remaining) == (4, 1)
    assert apply_ack_file(site.data_dir, ack_file).removed == 0


def test_a_forged_ack_clears_nothing(api, site, tmp_path):
    out = tmp_path / "reports.json"
    write_report_export(site.data_dir, out)
    body = imported(api, out)
    body["acknowledged"].append("f" * 32)  # altered after signing
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(body))
    with pytest.raises(OfflineError, match="nothing cleared"):
        apply_ack_file(site.data_dir, forged)
    assert site.depth() == 4


def test_an_ack_signed_by_another_key_clears_nothing(site, tmp_path):
    ack = ReportAckFile(
        agent_id=site.agent_id,
        acknowledged=[r.id for r in site.reports],
        stored=4,
        duplicates=0,
        issued_at="2026-01-01T00:00:00Z",
    )
    ack.signatures = [sign(Ed25519PrivateKey.generate(), ack.signed_part())]
    path = tmp_path / "stranger.json"
    path.write_text(ack.model_dump_json())
    with pytest.raises(OfflineError, match="untrusted key"):
        apply_ack_file(site.data_dir, path)
    assert site.depth() == 4


def test_another_agents_genuine_ack_clears_nothing(api, env, site, tmp_path):
    other = OfflineSite(api, env, tmp_path / "other", count=1)
    other.outbox_put(site.reports)  # even naming the same report ids
    out = tmp_path / "other.json"
    write_report_export(other.data_dir, out)
    ack = tmp_path / "other-ack.json"
    ack.write_text(json.dumps(imported(api, out)))
    with pytest.raises(OfflineError, match=f"this is {site.agent_id}"):
        apply_ack_file(site.data_dir, ack)
    assert site.depth() == 4


def test_the_cli_round_trip_in_process(api, admin_token, site, tmp_path, transport):
    out, ack = tmp_path / "r.json", tmp_path / "r.ack.json"
    runner = CliRunner()
    exported = runner.invoke(
        cli, ["agent", "export-reports", "--out", str(out), "--data-dir", str(site.data_dir)]
    )
    assert exported.exit_code == 0 and "Exported 4 report(s)" in exported.output
    operator = {"TETHER_URL": "http://tether.test", "TETHER_TOKEN": admin_token}
    first = runner.invoke(cli, ["reports", "import", str(out)], obj=transport, env=operator)
    assert first.exit_code == 0, first.output
    assert "4 report(s) stored, 0 already there" in first.output and ack.exists()
    cleared = runner.invoke(
        cli, ["agent", "import-ack", str(ack), "--data-dir", str(site.data_dir)]
    )
    assert cleared.exit_code == 0 and "4 report(s) acknowledged" in cleared.output
    assert site.depth() == 0
