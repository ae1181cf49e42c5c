"""Pull a 1 GiB artifact with the agent's downloader and with curl | tee | openssl, same server.

Starts the real control plane (`tether server`, gunicorn) on a free loopback port, registers a
generated artifact of random bytes (never kept: it lives in a temp dir removed at the end),
enrolls an agent, then in interleaved rounds:

- **agent**: a child process runs `ArtifactCache.get` over `ControlPlaneClient.download`: the
  agent's real path, streamed to `artifacts/partial/`, hashed on the side, verified, renamed. It
  reports the pull's seconds, CPU seconds and peak resident memory growth (VmHWM, reset first).
- **pipeline**: `curl -s URL -H auth | tee FILE | openssl dgst -sha256`, the digest checked.

Each output file is deleted and the page cache flushed (`sync`) between runs, outside the timing,
so one run's writeback does not land on the next. Prints both rates per round, their medians,
the ratio (target >= 0.7) and the agent's memory growth (target < 64 MB).

    .venv/bin/python scripts/bench/artifact_pull.py [--size-mib 1024] [--rounds 3] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import free_port, python, servers  # found through the sys.path entry just above

RATIO_TARGET = 0.7
MEMORY_TARGET_MB = 64
MIB = 1024 * 1024


# --- the agent side, in its own process ------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def agent_pull(job: dict) -> dict:
    """Pull the artifact one way (`job["variant"]`); return time, CPU and memory growth."""
    pull = VARIANTS[job["variant"]]
    # Imported before the clock starts, as in a running agent.
    import agent.local.cache
    import agent.sync.client  # noqa: F401

    # Reset the kernel's peak-RSS mark, so VmHWM afterwards is the peak during the pull alone
    # (no sampling thread to compete with the download for the GIL).
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    baseline = rss_bytes()
    cpu = time.process_time()
    started = time.perf_counter()
    pull(job)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "rss_growth": peak_rss_bytes() - baseline}


def pull_with_agent(job: dict, transport: object = None) -> None:
    """The agent's path: ArtifactCache.get over ControlPlaneClient.download."""
    from agent.local.cache import ArtifactCache
    from agent.sync.client import ControlPlaneClient

    cache = ArtifactCache(Path(job["dir"]), reserve_bytes=0, chunk_bytes=job["chunk_bytes"])
    with ControlPlaneClient(
        job["url"], job["token"], agent_id=job["agent_id"], transport=transport
    ) as client:  # type: ignore[arg-type]
        path = cache.get(
            job["sha256"], job["size"], lambda offset: client.download("big", 1, offset)
        )
    assert path.stat().st_size == job["size"]


def pull_with_agent_over_httpcore(job: dict) -> None:
    """The agent's cache, but bodies through httpx's own transport (its proxy fallback)."""
    pull_with_agent(job, transport=httpx.HTTPTransport())


def pull_with_plain_loop(job: dict) -> None:
    """What one writes first: an httpx iter_bytes loop that hashes and writes in one thread."""
    digest = hashlib.sha256()
    target = Path(job["dir"]) / "plain.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {job['token']}"}
    with (
        httpx.Client(timeout=60) as http,
        open(target, "wb") as handle,
        http.stream(
            "GET", f"{job['url']}/api/v1/models/big/versions/1/artifact", headers=headers
        ) as response,
    ):
        for chunk in response.iter_bytes():
            digest.update(chunk)
            handle.write(chunk)
    assert digest.hexdigest() == job["sha256"]


VARIANTS = {
    "agent": pull_with_agent,
    "agent-httpcore": pull_with_agent_over_httpcore,
    "plain-httpx": pull_with_plain_loop,
}


# --- the benchmark ---------------------------------------------------------------------------


def make_artifact(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(4 * MIB, remaining))
            digest.update(block)
            handle.write(block)
            remaining -= len(block)
    return digest.hexdigest()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pipeline(url: str, token: str, out: Path, sha256: str) -> tuple[float, float]:
    command = f"curl -s {url} -H 'Authorization: Bearer {token}' | tee {out} | openssl dgst -sha256"
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    if not done.stdout.strip().endswith(sha256):
        raise RuntimeError(f"pipeline digest mismatch: {done.stdout!r}")
    return seconds, children_cpu() - cpu


def run_agent(job: dict) -> dict:
    done = subprocess.run(
        [python(), __file__, "--worker", json.dumps(job)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"agent pull failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def settle(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    os.sync()  # write back what the last run left dirty, outside any timing


def setup(url: str, token: str, artifact: Path) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
        with open(artifact, "rb") as handle:
            pushed = http.post(
                "/api/v1/models/big/versions",
                files={"artifact": ("big.bin", handle, "application/octet-stream")},
                data={"metadata": "{}"},
            )
        pushed.raise_for_status()
        http.put("/api/v1/environments/bench", json={}).raise_for_status()
        http.put("/api/v1/environments/bench/desired/big", json={"version": 1}).raise_for_status()
        enrollment = http.post(
            "/api/v1/tokens", json={"role": "enrollment", "environment": "bench"}
        ).json()["token"]
    enrolled = httpx.post(
        f"{url}/api/v1/agents/enroll",
        json={"hostname": "bench"},
        headers={"Authorization": f"Bearer {enrollment}"},
    ).json()
    return {"artifact": pushed.json()["artifact"], **enrolled}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-bytes", type=int, default=MIB)
    parser.add_argument("--work-dir", type=Path, default=None, help="Where the temp dir goes.")
    parser.add_argument(
        "--also",
        nargs="*",
        default=[],
        choices=["agent-httpcore", "plain-httpx"],
        help="Also time these ways of pulling, for comparison.",
    )
    parser.add_argument("--check", action="store_true", help="Exit 1 if a target is missed.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(agent_pull(json.loads(args.worker))))
        return 0
    for tool in ("curl", "openssl", "tee"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2

    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="tether-pull-", dir=args.work_dir))
    try:
        artifact = work / "artifact.bin"
        print(f"generating {args.size_mib} MiB of random bytes in {work} ...", flush=True)
        sha256 = make_artifact(artifact, size)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        data_dir = work / "control-plane"
        with servers(work) as started:
            started.start(
                "control-plane",
                [
                    python(),
                    "-m",
                    "common",
                    "server",
                    "--data-dir",
                    str(data_dir),
                    "--port",
                    str(port),
                ],
                port,
            )
            admin = (data_dir / "admin.token").read_text().strip()
            print("uploading it to the control plane ...", flush=True)
            agent = setup(url, admin, artifact)
            artifact.unlink()
            assert agent["artifact"]["sha256"] == sha256
            download = f"{url}/api/v1/models/big/versions/1/artifact"
            job = {
                "url": url,
                "token": agent["token"],
                "agent_id": agent["agent_id"],
                "sha256": sha256,
                "size": size,
                "dir": str(work / "agent-cache"),
                "chunk_bytes": args.chunk_bytes,
            }
            out = work / "pipeline.bin"
            rows = []
            extra: dict[str, list[dict]] = {name: [] for name in args.also}
            for round_number in range(1, args.rounds + 1):
                settle(out)
                seconds, cpu = run_pipeline(download, agent["token"], out, sha256)
                pipe = {"seconds": seconds, "cpu": cpu}
                settle(Path(job["dir"]))
                pulled = run_agent({**job, "variant": "agent"})
                rows.append((pipe, pulled))
                print(
                    f"round {round_number}: pipeline {size / MIB / pipe['seconds']:5.0f} MiB/s "
                    f"({pipe['cpu']:.2f} CPU s)  agent {size / MIB / pulled['seconds']:5.0f} "
                    f"MiB/s ({pulled['cpu']:.2f} CPU s, +{pulled['rss_growth'] / MIB:.1f} MiB "
                    f"RSS)  ratio {pipe['seconds'] / pulled['seconds']:.2f}",
                    flush=True,
                )
                for name in args.also:
                    settle(Path(job["dir"]))
                    other = run_agent({**job, "variant": name})
                    extra[name].append(other)
                    print(
                        f"         {name:>16} {size / MIB / other['seconds']:5.0f} MiB/s "
                        f"({other['cpu']:.2f} CPU s, +{other['rss_growth'] / MIB:.1f} MiB RSS)  "
                        f"ratio {pipe['seconds'] / other['seconds']:.2f}",
                        flush=True,
                    )
            settle(out, Path(job["dir"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    pipe_rate = statistics.median(size / MIB / p["seconds"] for p, _ in rows)
    agent_rate = statistics.median(size / MIB / a["seconds"] for _, a in rows)
    ratio = statistics.median(p["seconds"] / a["seconds"] for p, a in rows)
    growth = max(a["rss_growth"] for _, a in rows) / MIB
    load = os.getloadavg()
    print()
    print(f"artifact: {args.size_mib} MiB, {args.rounds} rounds, load average {load[0]:.1f}")
    pipe_cpu = statistics.median(p["cpu"] for p, _ in rows)
    agent_cpu = statistics.median(a["cpu"] for _, a in rows)
    print(f"pipeline (curl | tee | openssl): {pipe_rate:.0f} MiB/s, {pipe_cpu:.2f} CPU s (medians)")
    print(
        f"agent downloader:                {agent_rate:.0f} MiB/s, {agent_cpu:.2f} CPU s (medians)"
    )
    print(
        f"ratio agent / pipeline:          {ratio:.2f} (median of rounds; target >= {RATIO_TARGET})"
    )
    print(
        f"agent memory growth:             {growth:.1f} MiB (max; target < {MEMORY_TARGET_MB} MB)"
    )
    ok = ratio >= RATIO_TARGET and growth * MIB < MEMORY_TARGET_MB * 1e6
    for name, runs in extra.items():
        rate = statistics.median(size / MIB / run["seconds"] for run in runs)
        cpu = statistics.median(run["cpu"] for run in runs)
        print(f"{name + ':':<33}{rate:.0f} MiB/s, {cpu:.2f} CPU s (medians)")
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
