"""Serve the benchmarks' reference apps: a bare Flask JSON view and a bare WSGI callable.

Run as a script, it serves one of them under one WSGI server:

    python scripts/bench/_apps.py --app flask --server gthread --workers 2 --threads 8 --port 8600

`--server tether` uses control_plane.server.ControlPlaneServer itself, so the reference apps run
on exactly the stack (and settings) that serves the control plane.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask, jsonify

PATH = "/bare"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def payload(size: int) -> dict[str, str]:
    """Return a constant JSON object whose Flask rendering is `size` bytes long."""
    empty = len(_render({"payload": ""}))
    return {"payload": "x" * max(0, size - empty)}


def _render(value: Any) -> bytes:
    # What Flask's jsonify writes outside debug mode: compact separators and a final newline.
    return (json.dumps(value, separators=(",", ":")) + "\n").encode()


def bare_flask(size: int) -> Flask:
    """Build a Flask app with one view that returns a constant JSON object."""
    app = Flask("bare_flask")
    body = payload(size)

    @app.get(PATH)
    def bare():  # type: ignore[no-untyped-def]
        return jsonify(body)

    return app


def bare_wsgi(size: int) -> WSGIApp:
    """Build a WSGI callable that answers every request with the same JSON bytes."""
    body = _render(payload(size))
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", headers)
        return [body]

    return app


def build(app: str, size: int) -> Any:
    """Build the named reference app."""
    return bare_flask(size) if app == "flask" else bare_wsgi(size)


def serve_gunicorn(app: Any, args: argparse.Namespace) -> None:
    """Serve `app` with ControlPlaneServer's gunicorn config, changing only what args ask."""
    from control_plane.server import ControlPlaneServer
    from control_plane.settings import ControlPlaneSettings

    overrides = {"port": args.port, "log_level": "warning"}
    if args.workers is not None:
        overrides["workers"] = args.workers
    if args.threads is not None:
        overrides["threads"] = args.threads
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="tether-bench-"))
    settings = ControlPlaneSettings(data_dir=data_dir, **overrides)
    worker_class = None if args.server == "tether" else args.server

    class ReferenceServer(ControlPlaneServer):
        def load_config(self) -> None:
            super().load_config()
            if worker_class is not None:
                self.cfg.set("worker_class", worker_class)

        def load(self):  # type: ignore[no-untyped-def]
            return app

    ReferenceServer(settings, {}).run()


def serve_waitress(app: Any, args: argparse.Namespace) -> None:
    """Serve `app` with waitress (one process, a thread pool)."""
    import waitress

    waitress.serve(
        app,
        host="127.0.0.1",
        port=args.port,
        threads=args.threads or 4,
        connection_limit=1000,
        _quiet=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=("flask", "wsgi"), required=True)
    parser.add_argument(
        "--server", choices=("tether", "gthread", "sync", "waitress"), default="tether"
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--size", type=int, default=64, help="Bytes of the JSON body.")
    parser.add_argument("--data-dir", help="Where gunicorn's control socket goes.")
    args = parser.parse_args()
    app = build(args.app, args.size)
    if args.server == "waitress":
        serve_waitress(app, args)
    else:
        serve_gunicorn(app, args)


if __name__ == "__main__":
    main()
