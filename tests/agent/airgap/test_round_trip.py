"""The whole air-gapped round trip as people run it: real `tether` processes, counts at each step.

provision -> enroll --from-file -> bundle export -> (control plane gone) import-bundle -> serve
-> reports in the outbox -> export-reports -> (control plane back) reports import, twice, and a
tampered copy -> a forged and a foreign ack refused -> import-ack -> the outbox is empty.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
import joblib
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.local.outbox import Outbox
from common.bundles import ReportExport
from common.cli import cli
from common.drift import ReferenceProfile
from common.reports import Report
from common.signing import describe, sign
from tests.support.agent_process import AgentProcess
from tests.support.models import train_wine, wine_frame
from tests.support.processes import ServerProcess
from tests.support.reports import drift_report, shadow_report

pytestmark = pytest.mark.e2e


def tether(*args: str, env: dict[str, str] | None = None, ok: bool = True) -> Result:
    """Run `tether ...` (in process, over real HTTP) with only the TETHER_* variables given."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TETHER_")}
    result = CliRunner().invoke(
        cli, list(args), env={**unset, **(env or {})}, catch_exceptions=False
    )
    if ok:
        assert result.exit_code == 0, f"tether {' '.join(args)}:\n{result.output}"
    return result


def as_json(result: Result) -> dict:
    return json.loads(result.stdout)


def outbox_depth(site: Path) -> int:
    outbox = Outbox(site / "outbox.db")
    try:
        return outbox.depth()
    finally:
        outbox.close()


def stored_reports(server: ServerProcess) -> list[dict]:
    response = httpx.get(
        f"{server.url}/api/v1/reports",
        params={"environment": "edge"},
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["reports"]


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Two wine models, their training data and an input example, as an operator has them."""
    frame, target = wine_frame()
    paths = {"train": tmp_path / "train.csv", "rows": tmp_path / "rows.json"}
    frame.assign(label=target).to_csv(paths["train"], index=False)
    paths["rows"].write_text(json.dumps(frame.iloc[:3].to_dict("records")))
    for number, c in ((1, 1.0), (2, 0.3)):
        paths[f"v{number}"] = tmp_path / f"wine-v{number}.joblib"
        joblib.dump(train_wine(c=c), paths[f"v{number}"])
    return paths


def test_the_air_gapped_round_trip(tmp_path: Path, inputs: dict[str, Path]):
    server = ServerProcess(tmp_path / "cp" / "data").start()
    try:
        operator = {"TETHER_URL": server.url, "TETHER_TOKEN": server.admin_token}
        site = tmp_path / "site"
        site_env = {"TETHER_MODE": "offline", "TETHER_FREE_DISK_RESERVE_BYTES": "0"}
        tether("env", "create", "edge", env=operator)
        for version in ("v1", "v2"):
            tether(
                "model",
                "push",
                "wine",
                str(inputs[version]),
                "--input-example",
                f"@{inputs['rows']}",
                "--reference",
                str(inputs["train"]),
                "--target",
                "label",
                env=operator,
            )
        tether("env", "set", "edge", "wine", "1", "--shadow", "2", env=operator)

        # 1. Provision on the operator's machine: one secret file.
        provision_file = tmp_path / "edge-7.tether-agent"
        provisioned = as_json(
            tether(
                "agent",
                "provision",
                "edge",
                "--out",
                str(provision_file),
                "--hostname",
                "edge-7",
                "--json",
                env=operator,
            )
        )
        assert stat.S_IMODE(provision_file.stat().st_mode) == 0o600
        agent_id = provisioned["agent_id"]

        # 2. Enroll the site from the file, no network.
        enrolled = as_json(
            tether(
                "agent",
                "enroll",
                "--from-file",
                str(provision_file),
                "--data-dir",
                str(site),
                "--pin",
                provisioned["signing_keys"][0],
                "--json",
                env=site_env,
            )
        )
        assert enrolled["agent_id"] == agent_id and enrolled["environment"] == "edge"

        # 3. Export the bundle: the manifest, then exactly the artifacts and profiles it names.
        bundle = tmp_path / "edge.tether-bundle.tar"
        exported = as_json(
            tether("bundle", "export", "edge", "--out", str(bundle), "--json", env=operator)
        )
        assert exported["bytes"] == bundle.stat().st_size
        with tarfile.open(bundle) as archive:
            names = archive.getnames()
            manifest = json.load(archive.extractfile("manifest.json"))["manifest"]  # type: ignore[arg-type]
        named = {
            ref["sha256"]
            for role in ("primary", "shadow")
            for ref in (
                manifest["models"]["wine"][role]["artifact"],
                manifest["models"]["wine"][role]["reference_profile"],
            )
        }
        assert len(named) in (3, 4)  # two profiles of the same data may be the same file
        assert names[0] == "manifest.json"
        assert sorted(names[1:]) == sorted(f"sha256/{digest}" for digest in named)

        # 4. The control plane is out of reach from here on: import and serve.
        server.stop()
        imported = as_json(
            tether(
                "agent",
                "import-bundle",
                str(bundle),
                "--data-dir",
                str(site),
                "--json",
                env=site_env,
            )
        )
        assert imported["swapped"] == ["wine"] and imported["failed"] == {}
        assert imported["cached"] == len(named) and imported["reused"] == 0
        rows = json.loads(inputs["rows"].read_text())
        with AgentProcess(site, env={**site_env, "TETHER_REPORT_INTERVAL": "3600"}) as agent:
            answer = agent.predict("wine", rows)
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == 1 and len(answer.json()["predictions"]) == 3
        status = as_json(tether("agent", "status", "--data-dir", str(site), "--json", env=site_env))
        assert status["models"]["wine"] == {
            **status["models"]["wine"],
            "serving": 1,
            "shadow": 2,
            "status": "ok",
        }

        # 5. Reports: what the agent's windows produced, plus realistic ones put in directly.
        profiles = {}
        for role in ("primary", "shadow"):
            entry = manifest["models"]["wine"][role]
            cached = site / "artifacts" / "sha256" / entry["reference_profile"]["sha256"]
            profiles[entry["version"]] = ReferenceProfile.model_validate_json(cached.read_bytes())
        frame = wine_frame()[0]
        made = [
            Report.model_validate(shadow_report("wine", 1, 2, shadowed=40 + i, agreed=38))
            for i in range(3)
        ]
        made += [
            Report.model_validate(
                drift_report(profiles[1], frame.iloc[i * 50 : (i + 1) * 50], "wine", 1)
            )
            for i in range(2)
        ]
        from_agent = outbox_depth(site)
        outbox = Outbox(site / "outbox.db")
        assert outbox.put(made) == 5
        outbox.close()
        waiting = outbox_depth(site)
        assert waiting == from_agent + 5

        # 6. Export the outbox: everything waiting, signed; it all stays until acknowledged.
        reports_file = tmp_path / "edge-7-reports.json"
        summary = as_json(
            tether(
                "agent",
                "export-reports",
                "--out",
                str(reports_file),
                "--data-dir",
                str(site),
                "--json",
                env=site_env,
            )
        )
        assert summary["reports"] == waiting and summary["left_behind"] == 0
        export = ReportExport.model_validate_json(reports_file.read_text())
        assert len(export.reports) == waiting and export.signature is not None
        assert outbox_depth(site) == waiting

        # 7. The control plane is back: import, twice; a tampered copy is refused whole.
        server.start()
        ack_file = tmp_path / "edge-7.ack.json"
        first = as_json(
            tether(
                "reports",
                "import",
                str(reports_file),
                "--ack-out",
                str(ack_file),
                "--json",
                env=operator,
            )
        )
        assert (first["stored"], first["duplicates"]) == (waiting, 0)
        assert len(stored_reports(server)) == waiting
        again = as_json(
            tether(
                "reports",
                "import",
                str(reports_file),
                "--ack-out",
                str(tmp_path / "again.json"),
                "--json",
                env=operator,
            )
        )
        assert (again["stored"], again["duplicates"]) == (0, waiting)
        tampered_body = json.loads(reports_file.read_text())
        tampered_body["reports"][0]["requests"] += 1000
        tampered_body["reports"].append(shadow_report("wine", 1, 2, shadowed=9, agreed=9))
        tampered = tmp_path / "tampered.json"
        tampered.write_text(json.dumps(tampered_body))
        refused = tether("reports", "import", str(tampered), env=operator, ok=False)
        assert refused.exit_code == 1 and "signature" in refused.output
        assert len(stored_reports(server)) == waiting
        shown = httpx.get(
            f"{server.url}/api/v1/environments/edge/status",
            headers={"Authorization": f"Bearer {server.admin_token}"},
            timeout=10,
        ).json()["agents"]
        [edge7] = [a for a in shown if a["agent_id"] == agent_id]
        assert edge7["last_import"] is not None
        assert edge7["models"]["wine"]["actual"]["serving"] == 1

        # 8. A forged ack and another agent's genuine ack clear nothing.
        forged_body = json.loads(ack_file.read_text())
        forged_body["acknowledged"] = [*forged_body["acknowledged"][:1], "x" * 32]
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps(forged_body))
        refused = tether(
            "agent", "import-ack", str(forged), "--data-dir", str(site), env=site_env, ok=False
        )
        assert refused.exit_code == 1 and "nothing cleared" in refused.output
        foreign = foreign_ack(server, tmp_path)
        refused = tether(
            "agent", "import-ack", str(foreign), "--data-dir", str(site), env=site_env, ok=False
        )
        assert refused.exit_code == 1 and "this is " + agent_id in refused.output
        assert outbox_depth(site) == waiting

        # 9. The real ack empties the outbox.
        cleared = as_json(
            tether(
                "agent",
                "import-ack",
                str(ack_file),
                "--data-dir",
                str(site),
                "--json",
                env=site_env,
            )
        )
        assert cleared == {"removed": waiting, "remaining": 0}
        assert outbox_depth(site) == 0
    finally:
        server.stop()


def foreign_ack(server: ServerProcess, tmp_path: Path) -> Path:
    """A genuine, signed acknowledgement for another offline agent of the same control plane."""
    key = Ed25519PrivateKey.generate()
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    other = httpx.post(
        f"{server.url}/api/v1/environments/edge/agents",
        json={"hostname": "edge-8", "public_key": describe(key.public_key()).model_dump()},
        headers=headers,
        timeout=10,
    ).json()
    export = ReportExport(
        agent_id=other["agent_id"],
        environment="edge",
        exported_at=datetime.now(UTC),
        reports=[Report.model_validate(shadow_report("wine", 1, 2, shadowed=3, agreed=3))],
    )
    export.signature = sign(key, export.signed_part())
    ack = httpx.post(
        f"{server.url}/api/v1/reports/import",
        content=export.model_dump_json(),
        headers={**headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert ack.status_code == 200, ack.text
    path = tmp_path / "foreign-ack.json"
    path.write_text(ack.text)
    return path
