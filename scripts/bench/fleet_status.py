"""Time `GET /environments/{env}/status` at 10,000 agents, on SQLite and on PostgreSQL.

The real app (in process, through Flask's test client, so the figure is the server's work and
not the network's) answers a page of the fleet: every agent counted by state, the first 100 of
them, failed ones first. The baseline, measured in the same rounds, interleaved, is what the same
request cost before pages (control_plane.fleet.environment_status over every agent, built in
full). Target: a page in at most 200 ms.

    .venv/bin/python scripts/bench/fleet_status.py [--agents 10000] [--rounds 7] [--no-postgresql]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from common.clock import utcnow  # noqa: E402
from control_plane.app import create_app  # noqa: E402
from control_plane.bootstrap import migrate  # noqa: E402
from control_plane.fleet import environment_status  # noqa: E402
from control_plane.settings import ControlPlaneSettings  # noqa: E402
from control_plane.store.db import write_transaction  # noqa: E402
from scripts.cluster.postgres import LocalPostgres, postgres_bin  # noqa: E402

TARGET_MS = 200.0
ENV = "big"


def fill(app, agents: int) -> None:
    """An environment of `agents`: 1% failed, 10% lagging, the rest converged, all heard now."""
    client = app.test_client()
    token = app.extensions["tether"].new_admin_token
    headers = {"Authorization": f"Bearer {token}"}
    client.put(f"/api/v1/environments/{ENV}", json={}, headers=headers)
    for index in range(2):
        client.post(
            "/api/v1/models/m/versions",
            data={"artifact": (io.BytesIO(b"model %d" % index), "m.joblib"), "metadata": "{}"},
            headers=headers,
            content_type="multipart/form-data",
        )
    client.put(f"/api/v1/environments/{ENV}/desired/m", json={"version": 2}, headers=headers)
    db = app.extensions["tether"].database
    now = datetime.now(UTC).isoformat()
    with write_transaction(db):
        for index in range(agents):
            status = "failed" if index % 97 == 0 else "ok"
            serving = 1 if index % 10 == 0 else 2
            models = json.dumps({"m": {"serving": serving, "shadow": None, "status": status}})
            db.execute(
                "INSERT INTO agents (id, environment, hostname, enrolled_at, last_seen, "
                "applied_revision, models) VALUES (?, ?, ?, ?, ?, 1, ?)",
                [f"agt_{index:08d}", ENV, f"host-{index}", now, now, models],
            )
    app.config["bench_headers"] = headers


def page_ms(app) -> float:
    client = app.test_client()
    started = time.perf_counter()
    response = client.get(f"/api/v1/environments/{ENV}/status", headers=app.config["bench_headers"])
    assert response.status_code == 200, response.get_data()
    return (time.perf_counter() - started) * 1000


def before_ms(app) -> float:
    """What the request cost before pages: every agent's full status, built and rendered."""
    state = app.extensions["tether"]
    started = time.perf_counter()
    with app.app_context():
        store = state.store
        desired = store.environments.desired(ENV)
        report = environment_status(desired, store.agents.list(ENV), utcnow(), 120)
        json.dumps(report.model_dump(mode="json"))
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tether-fleet-status-"))
    apps = {"sqlite": create_app({"data_dir": work / "sqlite"})}
    postgres = None
    if not args.no_postgresql and postgres_bin() is not None:
        postgres = LocalPostgres().start()
        url = postgres.create_database("bench")
        _, token = migrate(ControlPlaneSettings(data_dir=work / "pg", database_url=url))
        apps["postgresql"] = create_app({"data_dir": work / "pg", "database_url": url})
        apps["postgresql"].extensions["tether"].new_admin_token = token
    elif not args.no_postgresql:
        print("PostgreSQL is not installed: SQLite only", file=sys.stderr)
    try:
        for name, app in apps.items():
            print(f"filling {name} with {args.agents} agents...", file=sys.stderr)
            fill(app, args.agents)
            page_ms(app)  # warm up
        pages: dict[str, list[float]] = {name: [] for name in apps}
        befores: dict[str, list[float]] = {name: [] for name in apps}
        for round_number in range(1, args.rounds + 1):
            for name, app in apps.items():
                pages[name].append(page_ms(app))
                befores[name].append(before_ms(app))
                print(
                    f"  round {round_number}: {name:<10} page {pages[name][-1]:6.0f} ms   "
                    f"before pages {befores[name][-1]:6.0f} ms",
                    file=sys.stderr,
                )
        met = True
        for name in apps:
            page, before = statistics.median(pages[name]), statistics.median(befores[name])
            ok = page <= TARGET_MS
            met &= ok
            print(
                f"{name}: status page of {args.agents} agents {page:.0f} ms median "
                f"(each round: {' / '.join(f'{v:.0f}' for v in pages[name])}); before pages "
                f"{before:.0f} ms; {before / page:.1f}x faster; target <= {TARGET_MS:.0f} ms: "
                f"{'met' if ok else 'MISSED'}"
            )
    finally:
        for app in apps.values():
            app.extensions["tether"].close()
        if postgres is not None:
            postgres.stop()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
