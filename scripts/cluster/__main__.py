"""`make cluster`: PostgreSQL, three control-plane replicas and nginx with TLS, until Ctrl-C.

python -m scripts.cluster [--replicas 3] [--port 8443] [--dir tether-cluster] [--json]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from scripts.cluster.cluster import Cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=3, help="control-plane replicas [3]")
    parser.add_argument("--port", type=int, default=8443, help="nginx's TLS port [8443]")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("tether-cluster"),
        help="where it all lives [tether-cluster]",
    )
    parser.add_argument("--keep", action="store_true", help="keep --dir when stopping")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.replicas <= 16:
        parser.error("--replicas: between 1 and 16")
    if args.dir.exists() and any(args.dir.iterdir()):
        parser.error(f"--dir {args.dir} is not empty: remove it, or name another")

    def progress(line: str) -> None:
        print(f"  {line}...", file=sys.stderr, flush=True)

    cluster = Cluster(args.dir, replicas=args.replicas, port=args.port, progress=progress)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = time.monotonic()
    try:
        cluster.start()
        print_summary(cluster.summary(), time.monotonic() - started, as_json=args.json)
        while not stopping:
            time.sleep(0.2)
            for index, server in enumerate(cluster.servers):
                if server.process is not None and server.process.poll() is not None:
                    print(f"replica {index + 1} exited ({server.process.returncode}); "
                          f"its log: {server.log_path}", file=sys.stderr)  # fmt: skip
                    server.process = None
    except Exception as error:  # a failed start is reported, and what started is stopped
        print(f"make cluster failed: {error}", file=sys.stderr)
        return 1
    finally:
        print("stopping nginx, the replicas and PostgreSQL...", file=sys.stderr)
        cluster.stop()
        if not args.keep:
            cluster.remove()
    return 0


def print_summary(summary: dict, seconds: float, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2), flush=True)
        return
    replicas = ", ".join(f"{r['url']} (pid {r['pid']})" for r in summary["replicas"])
    print(
        f"""
Tether cluster up in {seconds:.1f} s: {len(summary["replicas"])} replicas on PostgreSQL, \
behind nginx with TLS.

  URL           {summary["url"]}
  CA file       {summary["ca_file"]}
  Admin token   {summary["admin_token"]}
  Database      {summary["database_url"]}
  Replicas      {replicas}

Try it:
  export TETHER_URL={summary["url"]} TETHER_CA_FILE={summary["ca_file"]}
  export TETHER_TOKEN={summary["admin_token"]}
  tether model list

Ctrl-C stops everything.""",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
