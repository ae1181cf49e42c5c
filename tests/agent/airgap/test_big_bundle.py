"""A bundle of a 200 MB artifact exports and imports in bounded memory.

The artifact is a real wine model padded with 200 MB of random bytes (joblib stops reading at
the end of its pickle, so it still loads and serves). `tether bundle export` and `tether agent
import-bundle` each run in their own process, which reports its peak RSS before the command
(after importing everything it needs) and after: the growth is what the 200 MB cost. The
bundle is then imported again: the cache holds the artifact, and its member is hashed anyway.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import pytest
from click.testing import CliRunner

from common.cli import cli
from tests.support.models import train_wine, wine_frame
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
SIZE = 200 * MB
GROWTH_LIMIT = 100 * MB

# Runs one `tether` command and prints the process's peak RSS (KiB on Linux) before and after.
MEASURED = """
import json, resource, sys
import agent.airgap.bundle, agent.cli.airgap, control_plane.cli.bundle, sklearn.pipeline
import sklearn.linear_model, sklearn.preprocessing
from common.cli import cli
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = peak()
try:
    cli.main(sys.argv[1:], prog_name="tether", standalone_mode=False)
    code = 0
except SystemExit as exit:
    code = exit.code or 0
print(json.dumps({"before": before, "after": peak(), "code": code}), file=sys.stderr)
"""


def measured(*args: str, env: dict[str, str]) -> tuple[dict, str]:
    """Run `tether *args` in a fresh process; return its memory figures and its stdout."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, *args],
        capture_output=True,
        text=True,
        env={**inherited, **env},
        timeout=300,
    )
    figures = json.loads(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0 and figures["code"] == 0, done.stdout + done.stderr
    return figures, done.stdout


def padded_model(path: Path) -> str:
    """Write a wine model followed by random bytes up to SIZE; return its sha256."""
    buffer = io.BytesIO()
    joblib.dump(train_wine(), buffer)
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        handle.write(buffer.getvalue())
        digest.update(buffer.getvalue())
        remaining = SIZE - len(buffer.getvalue())
        while remaining:
            block = os.urandom(min(8 * MB, remaining))
            handle.write(block)
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def test_a_200_mb_bundle_exports_and_imports_in_bounded_memory(tmp_path: Path):
    artifact = tmp_path / "big.joblib"
    digest = padded_model(artifact)
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(wine_frame()[0].iloc[:2].to_dict("records")))
    site = tmp_path / "site"
    bundle = tmp_path / "big.tether-bundle.tar"
    with ServerProcess(tmp_path / "cp" / "data") as server:
        operator = {"TETHER_URL": server.url, "TETHER_TOKEN": server.admin_token}

        def run(*args: str, env: dict[str, str] = operator) -> str:
            result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            return result.stdout

        run("env", "create", "big")
        pushed = json.loads(
            run("model", "push", "big", str(artifact), "--input-example", f"@{rows}", "--json")
        )
        assert pushed["artifact"] == {"sha256": digest, "size": SIZE, "format": "joblib"}
        run("env", "set", "big", "big", "1")
        provision_file = tmp_path / "big.tether-agent"
        run("agent", "provision", "big", "--out", str(provision_file))
        run("agent", "enroll", "--from-file", str(provision_file), "--data-dir", str(site), env={})

        exported, _ = measured("bundle", "export", "big", "--out", str(bundle), env=operator)
    assert bundle.stat().st_size > SIZE
    import_args = ("agent", "import-bundle", str(bundle), "--data-dir", str(site), "--json")
    offline = {"TETHER_MODE": "offline", "TETHER_FREE_DISK_RESERVE_BYTES": "0"}
    imported, out = measured(*import_args, env=offline)
    summary = json.loads(out)
    assert summary["swapped"] == ["big"] and summary["failed"] == {} and summary["cached"] == 1
    # Again: the cache holds the artifact, and its member in the bundle is hashed all the same
    # (streamed, not stored), so a damaged stick is refused even when nothing needs its bytes.
    reimported, out = measured(*import_args, env=offline)
    summary = json.loads(out)
    assert (summary["cached"], summary["reused"], summary["checked"]) == (0, 1, 1)

    cached = site / "artifacts" / "sha256" / digest
    assert cached.stat().st_size == SIZE
    check = hashlib.sha256()
    with open(cached, "rb") as handle:
        while block := handle.read(8 * MB):
            check.update(block)
    assert check.hexdigest() == digest
    for name, figures in (("export", exported), ("import", imported), ("re-import", reimported)):
        growth = figures["after"] - figures["before"]
        print(f"{name}: peak RSS {figures['after'] / MB:.0f} MB, growth {growth / MB:.1f} MB")
        assert growth < GROWTH_LIMIT, f"{name} grew {growth / MB:.0f} MB for a 200 MB bundle"
