"""TLS end to end: real `tether server` behind a real nginx over TLS with a throwaway CA, and
real agents and CLI runs talking to it through nginx."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from common.tls import TlsFiles, ssl_context
from control_plane.settings import ControlPlaneSettings
from scripts.cluster.nginx import PROXY_READ_TIMEOUT, LocalNginx, NginxSite, render_config
from tests.support.agent_process import AgentProcess, eventually
from tests.support.operator import ROWS, Operator
from tests.support.processes import TETHER, ServerProcess, free_port

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "nginx" / "tether.conf"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("cp") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def admin(server) -> Operator:
    """The operator, straight to the replica over http: setup is not what is tested here."""
    return Operator.of(server)


@pytest.fixture
def front(start_nginx, server) -> LocalNginx:
    return start_nginx([f"127.0.0.1:{server.port}"])


def replica(server: ServerProcess) -> str:
    return f"127.0.0.1:{server.port}"


def deploy(admin: Operator, env: str, artifact: bytes) -> tuple[int, int]:
    """Push `artifact` as the next wine version and deploy it; return (revision, version)."""
    admin.environment(env)
    version = admin.push("wine", artifact)["version"]
    return admin.desire(env, "wine", version), version


def ca_args(pki, *, client: bool = False) -> list[str]:
    args = ["--ca-file", str(pki.ca_cert)]
    if client:
        args += ["--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]
    return args


def test_an_agent_trusting_the_ca_pulls_and_serves_through_nginx(
    front, admin, pki, tmp_path, wine_model_bytes
):
    revision, version = deploy(admin, "tls", wine_model_bytes)
    agent = AgentProcess(tmp_path / "agent")
    agent.enroll(front.url, "tls", admin.enrollment_token("tls"), extra_args=ca_args(pki))
    with agent:
        eventually(lambda: admin.converged("tls", revision, agents=1))
        assert agent.serving_version("wine", ROWS) == version
    # Everything went through nginx, to the replica, over TLS.
    log = front.access_log.read_text()
    assert re.search(r'"GET /api/v1/agents/\S+/manifest[^"]*" 200 .* upstream=127\.0\.0\.1', log)
    assert f"GET /api/v1/models/wine/versions/{version}/artifact" in log


def test_without_the_ca_enrollment_fails_in_words_and_stores_nothing(front, admin, tmp_path):
    admin.environment("untrusted")
    agent = AgentProcess(tmp_path / "agent")
    done = agent.try_enroll(front.url, "untrusted", admin.enrollment_token("untrusted"))
    assert done.returncode == 1
    assert "certificate verify failed" in done.stderr and "pass --ca-file" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "agent").exists() or not any((tmp_path / "agent").iterdir())


def test_nginx_requiring_client_certificates_refuses_an_agent_without_one(
    start_nginx, server, admin, pki, tmp_path, wine_model_bytes
):
    mutual = start_nginx([replica(server)], require_client_cert=True)
    revision, version = deploy(admin, "mutual", wine_model_bytes)
    refused = AgentProcess(tmp_path / "refused")
    done = refused.try_enroll(
        mutual.url, "mutual", admin.enrollment_token("mutual"), extra_args=ca_args(pki)
    )
    assert done.returncode == 1
    assert "403 client_certificate_required" in done.stderr and "--client-cert" in done.stderr
    assert not (refused.data_dir / "identity.json").exists()

    agent = AgentProcess(tmp_path / "agent")
    token = admin.enrollment_token("mutual")
    agent.enroll(mutual.url, "mutual", token, extra_args=ca_args(pki, client=True))
    with agent:
        eventually(lambda: admin.converged("mutual", revision, agents=1))
        assert agent.serving_version("wine", ROWS) == version
    assert "client_verify=SUCCESS" in mutual.access_log.read_text()


class Cli:
    """Run `tether` as an operator would, with nothing but the flags given."""

    def __init__(self, home: Path) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        self.env = {**base, "XDG_CONFIG_HOME": str(home / "config")}
        self.home = home

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*TETHER, *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=60,
        )


def test_the_cli_with_the_ca_file_lists_models_through_nginx(
    front, server, admin, pki, tmp_path, wine_model_bytes
):
    admin.push("wine", wine_model_bytes)
    cli = Cli(tmp_path)
    target = ["--url", front.url, "--token", server.admin_token]
    listed = cli.run("model", "list", *target, "--ca-file", str(pki.ca_cert), "--json")
    assert listed.returncode == 0, listed.stderr
    assert "wine" in listed.stdout

    untrusted = cli.run("model", "list", *target)
    assert untrusted.returncode == 1
    assert "certificate verify failed" in untrusted.stderr and "--ca-file" in untrusted.stderr
    assert "Traceback" not in untrusted.stderr

    (tmp_path / "config" / "tether").mkdir(parents=True)
    (tmp_path / "config" / "tether" / "cli.toml").write_text(
        f'url = "{front.url}"\ntoken = "{server.admin_token}"\nca_file = "{pki.ca_cert}"\n'
    )
    assert cli.run("model", "list").returncode == 0


def test_a_large_upload_and_its_download_stream_through_nginx(front, server, pki, tmp_path):
    size = 48 * 1024 * 1024  # far above nginx's default 1 MiB body limit
    artifact = tmp_path / "big.skops"
    artifact.write_bytes(os.urandom(size))
    cli = Cli(tmp_path)
    pushed = cli.run(
        "model", "push", "big", str(artifact), "--format", "skops", "--json",
        "--url", front.url, "--token", server.admin_token, "--ca-file", str(pki.ca_cert),
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    verify = ssl_context(TlsFiles(pki.ca_cert))
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    received = 0
    with httpx.stream(
        "GET", f"{front.url}/api/v1/models/big/versions/1/artifact",
        headers=headers, verify=verify, timeout=30,
    ) as response:  # fmt: skip
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += len(chunk)
    assert received == size
    # Streamed both ways: nginx spooled neither body to its disk.
    log = front.log()
    assert "buffered to a temporary file" not in log, log
    assert not any((front.prefix / "temp" / "client_body").iterdir())


def test_a_long_poll_is_held_through_nginx_and_woken_by_a_change(front, admin, pki):
    admin.environment("waits")
    agent = admin.enroll("waits")
    http = httpx.Client(
        base_url=front.url,
        verify=ssl_context(TlsFiles(pki.ca_cert)),
        headers={"Authorization": f"Bearer {agent['token']}"},
        timeout=30,
    )
    path = f"/api/v1/agents/{agent['agent_id']}/manifest"
    etag = http.get(path).headers["ETag"]
    started = time.monotonic()
    held = http.get(path, params={"wait": "2"}, headers={"If-None-Match": etag})
    assert held.status_code == 304 and time.monotonic() - started >= 1.8

    answers: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answers.append(
            http.get(path, params={"wait": "20"}, headers={"If-None-Match": etag})
        )
    )
    started = time.monotonic()
    waiting.start()
    time.sleep(0.5)
    version = admin.push("tiny", b"not a model")["version"]
    admin.desire("waits", "tiny", version)
    waiting.join(timeout=25)
    assert answers and answers[0].status_code == 200
    assert time.monotonic() - started < 10
    http.close()


def test_the_read_timeout_outlives_the_longest_long_poll(tmp_path):
    """nginx's default 60 s would cut a long-poll: both configs set it above the cap."""
    cap = next(
        item.le for item in ControlPlaneSettings.model_fields["long_poll_max"].metadata
        if getattr(item, "le", None) is not None
    )  # fmt: skip
    assert cap < PROXY_READ_TIMEOUT
    site = NginxSite(["127.0.0.1:1"], port=1, cert=tmp_path / "c", key=tmp_path / "k")
    for text in (render_config(site, tmp_path), EXAMPLE.read_text()):
        directives = dict(
            re.findall(r"^\s*(proxy_\w+|client_max_body_size)\s+([^;]+);", text, re.M)
        )
        assert int(directives["proxy_read_timeout"].rstrip("s")) > cap
        assert int(directives["proxy_send_timeout"].rstrip("s")) > cap
        assert directives["proxy_request_buffering"] == "off"
        assert directives["proxy_buffering"] == "off"
        assert directives["client_max_body_size"] == "0"
        assert directives["proxy_next_upstream"] == "error timeout http_502 http_503 http_504"
        assert directives["proxy_http_version"] == "1.1"


def test_the_documented_example_is_a_config_nginx_accepts(nginx_installed, pki, tmp_path):
    """config/nginx/tether.conf, with its paths and ports changed, passes `nginx -t`."""
    text = EXAMPLE.read_text()
    text = text.replace("/etc/tether/tls/server.pem", str(pki.server_cert))
    text = text.replace("/etc/tether/tls/server.key", str(pki.server_key))
    text = re.sub(r"listen (\[::\]:)?80;", f"listen 127.0.0.1:{free_port()};", text, count=1)
    text = re.sub(r"\n\s*listen \[::\]:80;", "", text)
    text = re.sub(r"listen 443 ssl http2;", f"listen 127.0.0.1:{free_port()} ssl http2;", text)
    text = re.sub(r"\n\s*listen \[::\]:443 ssl http2;", "", text)
    # The commented mutual-TLS block, switched on.
    text = text.replace(
        "# ssl_client_certificate /etc/tether/tls/client-ca.pem;",
        f"ssl_client_certificate {pki.ca_cert};",
    )
    for line in (
        "ssl_verify_client optional;",
        "ssl_verify_depth 2;",
        "if ($ssl_client_verify != SUCCESS) {",
        "    return 403 '",
        "}\n",
    ):
        text = text.replace(f"# {line}", line)
    assert "ssl_verify_client optional;" in text and "# ssl_verify" not in text
    site = NginxSite(["127.0.0.1:1"], port=free_port(), cert=pki.server_cert, key=pki.server_key)
    nginx = LocalNginx(site, tmp_path / "nginx")
    rendered = nginx.conf.read_text()
    start = rendered.index("    upstream tether_control_plane")
    nginx.conf.write_text(rendered[:start] + text + "\n}\n")
    nginx.check()
