"""`make demo`: a control plane, one agent, a real model, a shadow, drift — on this machine.

Everything runs on 127.0.0.1 in a temporary data directory. Run from a terminal, the control
plane, the agent and the dashboard stay up after the tour until Ctrl-C; otherwise (CI, a pipe)
everything stops by itself. `--stay` or `--no-stay` says which outright. The data is
scikit-learn's bundled wine dataset; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import joblib
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

TETHER = [sys.executable, "-m", "common"]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def tether(*args: str, env: dict[str, str]) -> str:
    """Run a `tether` command, show it, and return its output."""
    print(f"$ tether {' '.join(args)}", flush=True)
    done = subprocess.run([*TETHER, *args], env=env, capture_output=True, text=True, timeout=120)
    output = (done.stdout + done.stderr).strip()
    if output:
        print(output, flush=True)
    if done.returncode != 0:
        raise SystemExit(f"tether {args[0]} failed")
    return done.stdout


def stay_up_by_default() -> bool:
    """Stay up when a person watches on a terminal; stop by itself in CI or a pipe."""
    return sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("CI")


def stay_until_interrupted(processes: list[subprocess.Popen]) -> None:
    """Wait for Ctrl-C (or SIGTERM), or until a process of the demo exits on its own."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        print("\na process of the demo exited by itself; stopping the rest")
    except KeyboardInterrupt:
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stay = parser.add_mutually_exclusive_group()
    stay.add_argument(
        "--stay",
        dest="stay",
        action="store_true",
        default=None,
        help="Leave everything up after the tour, until Ctrl-C.",
    )
    stay.add_argument(
        "--no-stay", dest="stay", action="store_false", help="Stop everything after the tour."
    )
    args = parser.parse_args()
    keep_running = stay_up_by_default() if args.stay is None else args.stay
    work = Path(tempfile.mkdtemp(prefix="tether-demo-"))
    cp_port, agent_port = free_port(), free_port()
    url = f"http://127.0.0.1:{cp_port}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    processes: list[subprocess.Popen] = []
    try:
        say("Start the control plane (SQLite and files under a temporary data dir)")
        server = subprocess.Popen(
            [*TETHER, "server", "--data-dir", str(work / "cp"), "--port", str(cp_port)],
            env={**base_env, "TETHER_POLICY_INTERVAL": "2"},
            stdout=subprocess.DEVNULL,
            stderr=open(work / "server.log", "w"),  # noqa: SIM115
            start_new_session=True,
        )
        processes.append(server)
        wait_for(f"{url}/readyz")
        token = (work / "cp" / "admin.token").read_text().strip()
        env = {**base_env, "TETHER_URL": url, "TETHER_TOKEN": token}
        print(f"control plane on {url}; admin token in {work / 'cp' / 'admin.token'}")

        say("Train two wine classifiers and push them, with their training data as reference")
        data = load_wine(as_frame=True)
        train = data.frame.rename(columns={"target": "label"})
        train.to_csv(work / "train.csv", index=False)
        for c, name in ((1.0, "v1.joblib"), (0.3, "v2.joblib")):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
            joblib.dump(model.fit(data.data, data.target), work / name)
        example = json.dumps(data.data.iloc[:2].to_dict("records"))
        for name in ("v1.joblib", "v2.joblib"):
            tether(
                "model",
                "push",
                "wine",
                str(work / name),
                "--reference",
                str(work / "train.csv"),
                "--target",
                "label",
                "--input-example",
                example,
                "--metadata",
                '{"metrics": {"accuracy": 0.97}}',
                env=env,
            )
        tether("model", "list", env=env)

        say("Create an environment: serve v1, run v2 beside it in shadow")
        tether("env", "create", "production", "--description", "demo", env=env)
        tether(
            "env", "set", "production", "wine", "1", "--shadow", "2", "--reason", "demo", env=env
        )

        say("Enroll an agent and start it: it pulls, verifies, smoke-tests and serves")
        enrollment = tether(
            "token", "create", "--role", "enrollment", "--env", "production", env=env
        ).strip()
        agent_env = {
            **base_env,
            "TETHER_POLL_INTERVAL": "1",
            "TETHER_FOLLOW_POLL_HINT": "false",
            "TETHER_REPORT_INTERVAL": "3",
            "TETHER_HEARTBEAT_INTERVAL": "1",
        }
        tether(
            "agent",
            "enroll",
            "--url",
            url,
            "--env",
            "production",
            "--token",
            enrollment,
            "--data-dir",
            str(work / "agent"),
            env=agent_env,
        )
        agent = subprocess.Popen(
            [
                *TETHER,
                "agent",
                "run",
                "--data-dir",
                str(work / "agent"),
                "--serve",
                f"127.0.0.1:{agent_port}",
            ],
            env=agent_env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "agent.log", "w"),  # noqa: SIM115
            start_new_session=True,
        )
        processes.append(agent)
        wait_for(f"http://127.0.0.1:{agent_port}/v2/health/ready")
        tether("status", "production", env=env)

        say("Ask the agent for a prediction")
        rows = data.data.to_dict("records")
        answer = httpx.post(
            f"http://127.0.0.1:{agent_port}/predict/wine", json={"instances": rows[:3]}, timeout=10
        ).json()
        print(json.dumps(answer, indent=2))

        say("Live traffic: the primary answers, the shadow runs off the hot path; then it drifts")
        rng = random.Random(1)
        shifted = data.data.assign(**{c: data.data[c] * 1.8 + 2 for c in data.data.columns[:8]})
        with httpx.Client(timeout=10) as client:
            for source in (rows, shifted.to_dict("records")):
                for _ in range(300):
                    client.post(
                        f"http://127.0.0.1:{agent_port}/predict/wine",
                        json={"instances": [source[rng.randrange(len(source))]]},
                    )
                time.sleep(4)  # a report window closes and reaches the control plane
        say("Shadow comparison, across the fleet")
        tether("reports", "shadow", "production", "wine", env=env)
        say("Drift of the serving version against its training reference")
        tether("reports", "drift", "production", "wine", env=env)
        tether("events", env=env)
        print(f"\nDashboard: {url}/ (sign in with the admin token); API docs: {url}/docs")
        if keep_running:
            print(
                f"\nStill running: the control plane on {url}, the agent on "
                f"http://127.0.0.1:{agent_port} (try POST /predict/wine).\n"
                f"  export TETHER_URL={url} TETHER_TOKEN=$(cat {work / 'cp' / 'admin.token'})\n"
                "  then any tether command, e.g. `tether status production`.\n"
                "Press Ctrl-C to stop everything and remove the demo's data."
            )
            stay_until_interrupted(processes)
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
        print("\nDemo over: every process stopped and its temporary data removed.")


if __name__ == "__main__":
    main()
