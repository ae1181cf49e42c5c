"""The scale-out deployment with real processes: PostgreSQL, three replicas, nginx over TLS.

A replica is killed (SIGKILL, its workers too) in the middle of report bursts, uploads and
desired-state changes from real agents and 200 simulated ones: nothing acknowledged is lost or
stored twice, the audit log stays gapless, and the replica rejoins. The policy leader is
killed: another replica takes the lead and makes the promotion once. A change made through
one replica wakes a long-poll held by another within a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from common.tls import TlsFiles, ssl_context
from scripts.cluster.cluster import DATABASE, Cluster
from tests.support.agent_process import AgentProcess, eventually
from tests.support.operator import ROWS, Operator
from tests.support.reports import shadow_report

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("cluster")]

FLEET = Path(__file__).resolve().parents[2] / "scripts" / "load" / "fleet.py"
POLICY_INTERVAL = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_installed, nginx_installed):
    with Cluster(
        tmp_path_factory.mktemp("cluster"), replicas=3, policy_interval=POLICY_INTERVAL
    ) as running:
        yield running


@pytest.fixture(scope="module")
def tls(cluster: Cluster):
    assert cluster.pki is not None
    return ssl_context(TlsFiles(ca_file=cluster.pki.ca_cert))


def operator(cluster: Cluster, tls, base_url: str | None = None) -> Operator:
    """The operator, through nginx over TLS unless a replica's own URL is given."""
    url = base_url or cluster.url
    http = httpx.Client(
        base_url=url,
        timeout=30,
        verify=tls,
        headers={"Authorization": f"Bearer {cluster.admin_token}"},
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    return Operator(http, url=url, example=ROWS)


def query(cluster: Cluster, sql: str) -> list[tuple]:
    assert cluster.postgres is not None
    return cluster.postgres.query(sql, DATABASE)


def test_a_change_through_one_replica_wakes_a_long_poll_on_another_within_a_second(
    cluster: Cluster, tls, wine_model_bytes: bytes
):
    one = operator(cluster, tls, cluster.servers[0].url)
    other = cluster.servers[1].url
    one.environment("wake")
    first = one.push("wine", wine_model_bytes)["version"]
    second = one.push("wine", wine_model_bytes + b"2")["version"]
    one.desire("wake", "wine", first)
    enrolled = httpx.post(
        f"{other}/api/v1/agents/enroll",
        json={"hostname": "waiter"},
        headers={"Authorization": f"Bearer {one.enrollment_token('wake')}"},
    ).json()
    manifest = f"{other}/api/v1/agents/{enrolled['agent_id']}/manifest"
    auth = {"Authorization": f"Bearer {enrolled['token']}"}
    etag = httpx.get(manifest, headers=auth).headers["ETag"]
    answered: list[tuple[int, float]] = []

    def wait() -> None:
        response = httpx.get(
            f"{manifest}?wait=30", headers={**auth, "If-None-Match": etag}, timeout=40
        )
        answered.append((response.status_code, time.monotonic()))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)  # held by the other replica by now
    changed = time.monotonic()
    one.desire("wake", "wine", second)
    waiter.join(timeout=40)
    status, at = answered[0]
    assert status == 200
    assert at - changed < 1.0, f"woken after {at - changed:.2f} s"
    one.close()


def test_a_replica_killed_mid_burst_loses_nothing_and_rejoins(
    cluster: Cluster, tls, tmp_path: Path, wine_model_bytes: bytes
):
    admin = operator(cluster, tls)
    admin.environment("burst")
    version = admin.push("wine", wine_model_bytes)["version"]
    admin.desire("burst", "wine", version)
    agents: list[AgentProcess] = []
    try:
        check_burst(cluster, admin, agents, tmp_path, wine_model_bytes)
    finally:
        for agent in agents:
            agent.stop()
        admin.close()


def check_burst(
    cluster: Cluster, admin: Operator, agents: list, tmp_path: Path, wine_model_bytes: bytes
) -> None:
    assert cluster.pki is not None
    for index in range(2):
        agent = AgentProcess(tmp_path / f"agent-{index}")
        agent.enroll(
            cluster.url, "burst", admin.enrollment_token("burst"), hostname=f"real-{index}",
            extra_args=["--ca-file", str(cluster.pki.ca_cert)],
        )  # fmt: skip
        agents.append(agent)
        agent.start()
    ids = tmp_path / "report-ids.txt"
    fleet = subprocess.Popen(
        [sys.executable, str(FLEET), "--url", cluster.url, "--ca-file", str(cluster.pki.ca_cert),
         "--admin-token", cluster.admin_token, "--agents", "200", "--duration", "36",
         "--ramp", "6", "--poll-interval", "3", "--heartbeat-interval", "5",
         "--report-interval", "3", "--reports-per-batch", "3", "--threads", "12",
         "--report-ids", str(ids), "--json"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    changes: list[int] = []
    uploads: list[int] = []
    stop = threading.Event()

    def operate() -> None:
        # Uploads and desired-state changes through nginx, all along, retried as a CI job would.
        while not stop.is_set():
            try:
                pushed = admin.push("wine", wine_model_bytes + str(time.time()).encode())
                uploads.append(pushed["version"])
                changes.append(admin.desire("burst", "wine", pushed["version"]))
            except (httpx.HTTPError, AssertionError, KeyError):
                pass  # the replica died under this request: the next one goes elsewhere
            time.sleep(0.5)

    worker = threading.Thread(target=operate)
    worker.start()
    try:
        time.sleep(14)
        cluster.kill(1)
        time.sleep(10)
        rejoined = cluster.restart(1)
        out, _ = fleet.communicate(timeout=120)
    finally:
        stop.set()
        worker.join(timeout=60)
        if fleet.poll() is None:
            fleet.kill()
    result = json.loads(out)
    assert result["enrolled"] == 200
    acknowledged = ids.read_text().split()
    assert len(acknowledged) == result["reports_acknowledged"] > 1000

    # Every acknowledged report is stored, once; nothing else is.
    stored = query(cluster, "SELECT id FROM reports WHERE environment = 'load'")
    assert len(stored) == len({row[0] for row in stored})
    assert set(acknowledged) <= {row[0] for row in stored}
    assert len(stored) - len(acknowledged) <= result["reports_unacknowledged"]

    # The audit log and the registry stay gapless through the crash.
    history = "SELECT revision FROM history WHERE environment = 'burst' ORDER BY id"
    revisions = [row[0] for row in query(cluster, history)]
    assert revisions == list(range(1, len(revisions) + 1))
    assert set(changes) <= set(revisions) and len(changes) >= 10
    registry = "SELECT version FROM versions WHERE model = 'wine' ORDER BY version"
    versions = [row[0] for row in query(cluster, registry)]
    assert versions == list(range(1, len(versions) + 1)) and set(uploads) <= set(versions)

    # The killed replica is back, and serves.
    back = httpx.get(f"{rejoined.url}/api/v1/models", headers=admin.http.headers)
    assert back.status_code == 200 and "wine" in back.text
    # The real agents ride it out and converge on the last change.
    last = admin.revision("burst")
    eventually(lambda: admin.converged("burst", last, agents=2), timeout=60)


def leader_pid(cluster: Cluster) -> int | None:
    rows = query(
        cluster,
        "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE "
        "'tether-leader:%'",
    )
    return int(rows[0][0].rsplit(":", 1)[1]) if rows else None


def test_the_policy_leader_dies_and_another_makes_the_promotion_once(
    cluster: Cluster, tls, wine_model_bytes: bytes
):
    admin = operator(cluster, tls)
    admin.environment("leader")
    primary = admin.push("wine", wine_model_bytes + b"primary")["version"]
    candidate = admin.push("wine", wine_model_bytes + b"candidate")["version"]
    admin.desire("leader", "wine", primary, shadow=candidate)
    response = admin.http.put(
        "/api/v1/environments/leader/policy",
        json={"promote": {"auto": True, "min_samples": 100, "min_agreement": 0.9}},
    )
    assert response.status_code == 200, response.text
    pids = {server.process.pid: index for index, server in enumerate(cluster.servers)
            if server.process}  # fmt: skip
    leader = eventually(lambda: leader_pid(cluster), timeout=POLICY_INTERVAL * 5)
    assert leader in pids
    cluster.kill(pids[leader])

    # The promotion becomes due just as the leader dies. Requests nginx had already sent to
    # the dead replica fail (a POST is never replayed), so each is retried as a client would.
    token = eventually(lambda: admin.enrollment_token("leader"))

    def enroll() -> dict | None:
        answer = admin.http.post(
            "/api/v1/agents/enroll",
            json={"hostname": "shadowing"},
            headers={"Authorization": f"Bearer {token}"},
        )
        return answer.json() if answer.status_code == 201 else None

    enrolled = eventually(enroll)
    batch = [shadow_report("wine", primary, candidate, shadowed=200, agreed=199)]

    def report() -> bool:
        sent = admin.http.post(
            f"/api/v1/agents/{enrolled['agent_id']}/reports",
            json={"reports": batch},  # the same report ids each time: stored once
            headers={"Authorization": f"Bearer {enrolled['token']}"},
        )
        return sent.status_code == 200

    eventually(report)
    killed_at = time.monotonic()

    def promoted() -> bool:
        return (
            admin.actual("leader", "wine") is not None
            and admin.http.get("/api/v1/environments/leader/desired").json()["models"]["wine"][
                "version"
            ]
            == candidate
        )

    eventually(promoted, timeout=POLICY_INTERVAL * 2 + 10)
    took = time.monotonic() - killed_at
    new_leader = leader_pid(cluster)
    assert new_leader is not None and new_leader != leader
    time.sleep(POLICY_INTERVAL * 3)  # more passes, on whichever replica leads
    events = query(cluster, "SELECT kind FROM events WHERE environment = 'leader'")
    assert events.count(("promotion",)) == 1
    promotions = query(
        cluster, "SELECT actor FROM history WHERE environment = 'leader' AND action = 'promote'"
    )
    assert promotions == [("policy:promote",)]
    assert took < POLICY_INTERVAL * 2 + 5
    cluster.restart(pids[leader])
    admin.close()


def test_make_cluster_prints_what_a_user_needs_and_stops_everything_on_ctrl_c(
    tmp_path: Path, postgres_installed, nginx_installed
):
    from tests.support.processes import free_port

    root = tmp_path / "tether-cluster"
    started = subprocess.Popen(
        [sys.executable, "-m", "scripts.cluster", "--dir", str(root), "--replicas", "2",
         "--port", str(free_port()), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert started.stdout is not None
    lines = []
    for line in started.stdout:
        lines.append(line)
        if line.rstrip() == "}":
            break
    summary = json.loads("".join(lines))
    assert summary["admin_token"].startswith("tether_admin_") and len(summary["replicas"]) == 2
    tls = ssl_context(TlsFiles(ca_file=Path(summary["ca_file"])))
    listed = httpx.get(
        f"{summary['url']}/api/v1/models",
        headers={"Authorization": f"Bearer {summary['admin_token']}"},
        verify=tls,
    )
    assert listed.status_code == 200
    started.send_signal(2)  # Ctrl-C
    _, err = started.communicate(timeout=60)
    assert started.returncode == 0, err
    assert "stopping nginx, the replicas and PostgreSQL" in err
    assert not root.exists()
    for replica in summary["replicas"]:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{replica['url']}/readyz", timeout=2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replicas", "0"], "--replicas: between 1 and 16"),
        (["--replicas", "x"], "invalid int value: 'x'"),
        (["--dir", "."], "is not empty"),
    ],
)
def test_make_cluster_bad_input(args: list[str], message: str):
    done = subprocess.run(
        [sys.executable, "-m", "scripts.cluster", *args],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr
