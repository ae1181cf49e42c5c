"""A real nginx in front of control-plane replicas, over TLS, living in one temp directory.

Used by the tests and by `make cluster`. `render_config` writes the directives of
config/nginx/tether.conf (documented there) for given replicas, port and certificates;
`LocalNginx` runs `nginx -p PREFIX -c nginx.conf -g 'daemon off;'` with its pid file, logs and
temp files all under PREFIX, and waits until it accepts connections.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Above the longest long-poll a control plane may hold (long_poll_max is at most 600 s).
PROXY_READ_TIMEOUT = 660
TLS_PROTOCOLS = "TLSv1.2 TLSv1.3"
CLIENT_CERT_REFUSAL = (
    '{"error": {"code": "client_certificate_required", "message": "this control plane '
    "requires a client certificate signed by its CA ($ssl_client_verify): pass --client-cert "
    'and --client-key"}}'
)
NO_REPLICA = (
    '{"error": {"code": "bad_gateway", "message": "no control-plane replica answered; try again"}}'
)
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> Path | None:
    """Return the nginx executable (Debian puts it in /usr/sbin, often not on PATH), or None."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


@dataclass(frozen=True)
class NginxSite:
    """What one nginx in front of the control plane needs to know."""

    replicas: Sequence[str]  # HOST:PORT of each control-plane replica
    port: int
    cert: Path
    key: Path
    # The CA that signs client certificates; with require_client_cert, clients must show one.
    client_ca: Path | None = None
    require_client_cert: bool = False
    host: str = "127.0.0.1"
    max_fails: int = 2
    fail_timeout: int = 10
    read_timeout: int = PROXY_READ_TIMEOUT

    def __post_init__(self) -> None:
        if not self.replicas:
            raise ValueError("an nginx site needs at least one replica")
        if self.require_client_cert and self.client_ca is None:
            raise ValueError("require_client_cert needs client_ca: the CA that signs them")


def render_config(site: NginxSite, prefix: Path) -> str:
    """Return a complete nginx.conf for `site`, keeping every file it writes under `prefix`."""
    prefix = Path(prefix).absolute()
    # nginx refuses `user` unless its master runs as root; as root, workers must still read
    # the 0600 key files and the temp dirs made here, so they run as root too (tests only).
    user = "user root;\n" if os.geteuid() == 0 else ""
    servers = "\n".join(
        f"        server {replica} max_fails={site.max_fails} fail_timeout={site.fail_timeout}s;"
        for replica in site.replicas
    )
    temp_paths = "\n".join(f"    {name}_temp_path {prefix / 'temp' / name};" for name in TEMP_DIRS)
    mutual = ""
    if site.client_ca is not None:
        mutual = (
            f"        ssl_client_certificate {Path(site.client_ca).absolute()};\n"
            "        ssl_verify_client optional;\n"
            "        ssl_verify_depth 2;\n"
        )
        if site.require_client_cert:
            mutual += (
                "        if ($ssl_client_verify != SUCCESS) {\n"
                f"            return 403 '{CLIENT_CERT_REFUSAL}';\n"
                "        }\n"
            )
    return f"""# Rendered by scripts/cluster/nginx.py; config/nginx/tether.conf explains each line.
{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "logs" / "error.log"} info;

events {{
    worker_connections 1024;
}}

http {{
{temp_paths}
    log_format tether '$remote_addr "$request" $status $body_bytes_sent '
                      'upstream=$upstream_addr upstream_status=$upstream_status '
                      'request_time=$request_time client_verify=$ssl_client_verify';
    access_log {prefix / "logs" / "access.log"} tether;

    upstream tether_control_plane {{
{servers}
        keepalive 32;
    }}

    server {{
        listen {site.host}:{site.port} ssl;
        server_name localhost;

        ssl_certificate {Path(site.cert).absolute()};
        ssl_certificate_key {Path(site.key).absolute()};
        ssl_protocols {TLS_PROTOCOLS};
        ssl_prefer_server_ciphers off;
        ssl_session_cache shared:tether_tls:1m;
        ssl_session_tickets off;
{mutual}
        default_type application/json;
        error_page 502 504 = @no_replica;

        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_read_timeout {site.read_timeout}s;
        proxy_send_timeout {site.read_timeout}s;
        proxy_connect_timeout 5s;

        proxy_next_upstream error timeout http_502 http_503 http_504;
        proxy_next_upstream_tries 3;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $host;

        location / {{
            proxy_pass http://tether_control_plane;
        }}

        location @no_replica {{
            return 502 '{NO_REPLICA}';
        }}
    }}
}}
"""


def write_config(site: NginxSite, prefix: Path) -> Path:
    """Write `prefix`/nginx.conf for `site` with the log and temp dirs it needs; return it."""
    prefix = Path(prefix)
    for directory in (prefix / "logs", *(prefix / "temp" / name for name in TEMP_DIRS)):
        directory.mkdir(parents=True, exist_ok=True)
    path = prefix / "nginx.conf"
    path.write_text(render_config(site, prefix))
    return path


class NginxError(RuntimeError):
    """nginx is missing, refused its config, or did not start."""


class LocalNginx:
    """Start, use and stop one nginx process whose every file lives under `prefix`."""

    def __init__(self, site: NginxSite, prefix: Path | None = None) -> None:
        binary = nginx_binary()
        if binary is None:
            raise NginxError("nginx is not installed: apt-get install nginx")
        self.binary = binary
        self.site = site
        self._owns_prefix = prefix is None
        self.prefix = Path(prefix or tempfile.mkdtemp(prefix="tether-nginx-")).absolute()
        self.conf = write_config(site, self.prefix)
        self.url = f"https://{site.host}:{site.port}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    def command(self, *extra: str) -> list[str]:
        # -e: the error log before the config is read, so nothing is written outside prefix.
        return [
            str(self.binary), "-p", str(self.prefix), "-c", str(self.conf),
            "-e", str(self.error_log), *extra,
        ]  # fmt: skip

    def check(self) -> None:
        """Run `nginx -t` on the config; raise NginxError with nginx's words if it is bad."""
        done = subprocess.run(self.command("-t"), capture_output=True, text=True)
        if done.returncode != 0:
            raise NginxError(f"nginx refused {self.conf}:\n{done.stderr.strip()}")

    def start(self, timeout: float = 10.0) -> LocalNginx:
        """Start nginx in the foreground of its own process; return once it accepts."""
        self.check()
        self.process = subprocess.Popen(
            self.command("-g", "daemon off;"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NginxError(f"nginx exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.site.host, self.site.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise NginxError(f"nginx did not accept on port {self.site.port} in {timeout} s")

    def stop(self) -> None:
        """Stop nginx (fast shutdown: SIGTERM), waiting for its workers to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        if self._owns_prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)

    def log(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def __enter__(self) -> LocalNginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
