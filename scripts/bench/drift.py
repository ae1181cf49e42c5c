"""Benchmark common.drift against scipy and Evidently on the same generated frames.

    .venv/bin/python scripts/bench/drift.py                  # 100k and 1M rows x 20 features
    .venv/bin/python scripts/bench/drift.py --rows 100000 --no-evidently

Each size draws a reference and a window of that many rows (20 numeric features, some drifted by
amounts on both sides of the 0.1 threshold), saves them as .npy and measures, each in its own
process: Tether (build_profile, then sketch + compare; best of --repeat), scipy's per-column
ks_2samp + wasserstein_distance, and Evidently's DataDriftPreset, which runs in .venv-evidently
(built by setup_evidently.sh on first use) so that it is never a dependency of Tether. The 1M
Evidently run is abandoned past --evidently-timeout seconds. Prints times, ratios, peak memory
and every per-feature decision on which the tools differ.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EVIDENTLY_PYTHON = ROOT / ".venv-evidently" / "bin" / "python"
EVIDENTLY_SETUP = ROOT / "scripts" / "bench" / "setup_evidently.sh"
EVIDENTLY_WORKER = ROOT / "scripts" / "bench" / "drift_evidently_worker.py"

Draw = Callable[[np.random.Generator, int], np.ndarray]

# (name, reference draw, window draw): shifts sit on both sides of the normed-Wasserstein 0.1 line.
FEATURES: list[tuple[str, Draw, Draw]] = [
    ("normal_same", lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0, 1, n)),
    ("normal_+0.02", lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0.02, 1, n)),
    ("normal_+0.05", lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0.05, 1, n)),
    ("normal_+0.08", lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0.08, 1, n)),
    ("normal_+0.095", lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0.095, 1, n)),
    ("normal_+0.105", lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0.105, 1, n)),
    ("normal_+0.12", lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0.12, 1, n)),
    ("normal_+0.3", lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0.3, 1, n)),
    ("normal_x1.2", lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0, 1.2, n)),
    ("lognormal_same", lambda r, n: r.lognormal(0, 0.6, n), lambda r, n: r.lognormal(0, 0.6, n)),
    ("lognormal_+0.1", lambda r, n: r.lognormal(0, 0.6, n), lambda r, n: r.lognormal(0.1, 0.6, n)),
    ("uniform_same", lambda r, n: r.uniform(0, 1, n), lambda r, n: r.uniform(0, 1, n)),
    ("uniform_+0.03", lambda r, n: r.uniform(0, 1, n), lambda r, n: r.uniform(0.03, 1.03, n)),
    ("exponential_same", lambda r, n: r.exponential(1, n), lambda r, n: r.exponential(1, n)),
    ("exponential_x1.15", lambda r, n: r.exponential(1, n), lambda r, n: r.exponential(1.15, n)),
    ("student5_same", lambda r, n: r.standard_t(5, n), lambda r, n: r.standard_t(5, n)),
    ("student5_+0.1", lambda r, n: r.standard_t(5, n), lambda r, n: r.standard_t(5, n) + 0.1),
    ("poisson20_same", lambda r, n: r.poisson(20, n) * 1.0, lambda r, n: r.poisson(20, n) * 1.0),
    ("poisson20_to21", lambda r, n: r.poisson(20, n) * 1.0, lambda r, n: r.poisson(21, n) * 1.0),
    ("bimodal_0.5_to_0.55", lambda r, n: _bimodal(r, n, 0.5), lambda r, n: _bimodal(r, n, 0.55)),
]


def _bimodal(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    return np.where(rng.random(n) < share, rng.normal(-3, 1, n), rng.normal(3, 1, n))


def generate(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Draw the reference and the window, one column per feature."""
    rng = np.random.default_rng(seed)
    reference = np.column_stack([draw(rng, rows) for _, draw, _ in FEATURES])
    current = np.column_stack([draw(rng, rows) for _, _, draw in FEATURES])
    return reference, current, [name for name, _, _ in FEATURES]


def _load(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = json.loads((folder / "names.json").read_text())
    return np.load(folder / "reference.npy"), np.load(folder / "current.npy"), names


def tether_worker(folder: Path, repeat: int) -> dict:
    """Time build_profile, sketch and compare on the saved frames (run in a fresh process)."""
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from common.drift import build_profile, compare, sketch

    reference_array, current_array, names = _load(folder)
    # Views, not copies: the frames are the input, held once.
    reference = pd.DataFrame(reference_array, columns=names, copy=False)
    current = pd.DataFrame(current_array, columns=names, copy=False)
    loaded_rss = _current_rss()
    runs = []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        profile = build_profile(reference)
        built = time.perf_counter()
        window = sketch(profile, current)
        counted = time.perf_counter()
        report = compare(profile, window)
        done = time.perf_counter()
        runs.append(
            {
                "build": built - start,
                "sketch": counted - built,
                "compare": done - counted,
                "cpu": time.process_time() - cpu,
            }
        )
    best = min(runs, key=lambda run: run["build"] + run["sketch"] + run["compare"])
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    tracemalloc.start()
    compare(build_profile(reference), sketch(build_profile(reference), current))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    live = current.iloc[:2000].to_dict("records")
    one_by_one = sketch(profile)
    add_seconds = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for row in live:
            one_by_one.add(row)
        add_seconds = min(add_seconds, (time.perf_counter() - start) / len(live))

    return {
        **best,
        "sketch_compare": best["sketch"] + best["compare"],
        "end_to_end": best["build"] + best["sketch"] + best["compare"],
        "add_row_seconds": add_seconds,
        "input_bytes": reference_array.nbytes + current_array.nbytes,
        "peak_rss_bytes": peak_rss,
        "loaded_rss_bytes": loaded_rss,
        "traced_peak_bytes": traced_peak,
        "profile_json_bytes": len(profile.model_dump_json()),
        "features": {
            name: {
                "test": feature.test,
                "score": feature.score,
                "wasserstein": feature.wasserstein,
                "ks_statistic": feature.ks_statistic,
                "drifted": feature.drifted,
            }
            for name, feature in report.features.items()
        },
        "dataset_drift": report.dataset_drift,
    }


def _current_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def scipy_run(folder: Path) -> dict:
    """Time scipy's per-column ks_2samp and wasserstein_distance on the raw frames."""
    from scipy import stats

    reference, current, names = _load(folder)
    features = {}
    start, cpu = time.perf_counter(), time.process_time()
    for i, name in enumerate(names):
        ks = stats.ks_2samp(reference[:, i], current[:, i])
        distance = stats.wasserstein_distance(reference[:, i], current[:, i])
        features[name] = {
            "ks_statistic": float(ks.statistic),
            "wasserstein": float(distance / np.std(reference[:, i])),
        }
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    for feature in features.values():
        feature["drifted"] = feature["wasserstein"] >= 0.1
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "features": features}


def evidently_run(folder: Path, timeout: float) -> dict:
    """Run the Evidently worker in .venv-evidently, giving up after `timeout` seconds."""
    if not EVIDENTLY_PYTHON.exists():
        subprocess.run(["bash", str(EVIDENTLY_SETUP)], check=True)
    try:
        done = subprocess.run(
            [str(EVIDENTLY_PYTHON), str(EVIDENTLY_WORKER), str(folder)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _in_subprocess(mode: str, folder: Path, repeat: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", mode, str(folder), "--repeat", str(repeat)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(rows: int, seed: int, repeat: int, evidently: bool, timeout: float) -> dict:
    """Measure every tool on one generated size."""
    with tempfile.TemporaryDirectory(prefix="tether-drift-bench-") as tmp:
        folder = Path(tmp)
        reference, current, names = generate(rows, seed)
        np.save(folder / "reference.npy", reference)
        np.save(folder / "current.npy", current)
        (folder / "names.json").write_text(json.dumps(names))
        del reference, current
        result = {"rows": rows, "features": len(names)}
        result["tether"] = _in_subprocess("tether", folder, repeat)
        result["scipy"] = _in_subprocess("scipy", folder, 1)
        if evidently:
            result["evidently"] = evidently_run(folder, timeout)
    return result


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def report(result: dict) -> None:
    """Print one size's figures, ratios and differing decisions."""
    tether, exact = result["tether"], result["scipy"]
    evidently = result.get("evidently")
    mib = 1024 * 1024
    rows = result["rows"]
    print(
        f"\n== {rows:,} rows x {result['features']} numeric features, reference and window each =="
    )
    print(f"tether build_profile      {_seconds(tether['build']):>9}   (target at 1M: <= 3 s)")
    print(
        f"tether sketch + compare   {_seconds(tether['sketch_compare']):>9}   (target at 1M: "
        f"<= 1 s; sketch {_seconds(tether['sketch'])}, compare {_seconds(tether['compare'])})"
    )
    print(
        f"tether end to end         {_seconds(tether['end_to_end']):>9}   "
        f"(CPU {_seconds(tether['cpu'])}: columns go to 2 threads from 200k rows)"
    )
    print(f"tether add(one row)       {tether['add_row_seconds'] * 1e6:>6.1f} us")
    print(
        f"tether peak RSS           {tether['peak_rss_bytes'] / mib:>6.0f} MiB = "
        f"{tether['peak_rss_bytes'] / tether['input_bytes']:.2f}x the input of "
        f"{tether['input_bytes'] / mib:.0f} MiB (target < 3x); "
        f"{(tether['peak_rss_bytes'] - tether['loaded_rss_bytes']) / mib:.0f} MiB above the loaded "
        f"frames, {tether['traced_peak_bytes'] / mib:.0f} MiB traced allocations at peak"
    )
    print(f"tether profile JSON       {tether['profile_json_bytes'] / 1024:>6.0f} KiB")
    print(
        f"scipy ks_2samp + wasserstein_distance per column: {_seconds(exact['seconds'])} "
        f"(CPU {_seconds(exact['cpu_seconds'])})"
    )
    print(
        f"   ratio scipy / tether: {exact['seconds'] / tether['end_to_end']:.1f}x end to end, "
        f"{exact['seconds'] / tether['sketch_compare']:.1f}x against sketch + compare"
    )
    if evidently is None:
        print("evidently DataDriftPreset: skipped")
    elif "timeout" in evidently:
        print(
            f"evidently DataDriftPreset: did not finish in {evidently['timeout']:.0f} s, so "
            f"tether is > {evidently['timeout'] / tether['end_to_end']:.0f}x faster end to end"
        )
    else:
        print(
            f"evidently DataDriftPreset: {_seconds(evidently['seconds'])} (CPU "
            f"{_seconds(evidently['cpu_seconds'])}), peak RSS "
            f"{evidently['peak_rss_bytes'] / mib:.0f} MiB (evidently {evidently['evidently']}, "
            f"pandas {evidently['pandas']})"
        )
        print(
            f"   ratio evidently / tether: {evidently['seconds'] / tether['end_to_end']:.1f}x end "
            f"to end (target >= 50x at 1M, >= 20x at 100k), "
            f"{evidently['seconds'] / tether['sketch_compare']:.1f}x against sketch + compare; "
            f"CPU time {evidently['cpu_seconds'] / tether['cpu']:.1f}x"
        )
    _decisions(tether, exact, evidently)


def _decisions(tether: dict, exact: dict, evidently: dict | None) -> None:
    gaps_ks, gaps_w = [], []
    for name, truth in exact["features"].items():
        ours = tether["features"][name]
        gaps_ks.append(abs(ours["ks_statistic"] - truth["ks_statistic"]))
        gaps_w.append(
            abs(ours["wasserstein"] - truth["wasserstein"]) / max(truth["wasserstein"], 0.1)
        )
    print(
        f"against scipy on the raw data: KS statistic within {max(gaps_ks):.5f}; normed "
        f"Wasserstein within {max(gaps_w) * 100:.3f}% (of the value, or of 0.1 below it)"
    )
    print(
        f"{'feature':22} {'tether':>9} {'scipy':>9} {'evidently':>9}  "
        "drifted? tether/scipy/evidently"
    )
    differing = []
    for name, ours in tether["features"].items():
        truth = exact["features"][name]
        theirs = (evidently or {}).get("features", {}).get(name)
        marks = ["D" if ours["drifted"] else ".", "D" if truth["drifted"] else "."]
        theirs_score = "-"
        if theirs is not None:
            marks.append("D" if theirs["drifted"] else ".")
            theirs_score = f"{theirs['score']:.5f}"
        print(
            f"{name:22} {ours['wasserstein']:9.5f} {truth['wasserstein']:9.5f} "
            f"{theirs_score:>9}  {'/'.join(marks)}"
        )
        if len(set(marks)) > 1:
            differing.append(name)
    print("decisions that differ:", ", ".join(differing) if differing else "none")


def main() -> None:
    """Parse the options and run the benchmark, or one worker when --worker is given."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat", type=int, default=3, help="Tether runs per size; the best counts"
    )
    parser.add_argument("--no-evidently", action="store_true", help="skip Evidently")
    parser.add_argument("--evidently-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    parser.add_argument("--worker", choices=["tether", "scipy"], help=argparse.SUPPRESS)
    parser.add_argument("folder", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work = (
            tether_worker(args.folder, args.repeat)
            if args.worker == "tether"
            else scipy_run(args.folder)
        )
        print(json.dumps(work))
        return
    results = []
    for rows in args.rows:
        result = measure(
            rows, args.seed, args.repeat, not args.no_evidently, args.evidently_timeout
        )
        report(result)
        results.append(result)
    if args.json:
        args.json.write_text(
            json.dumps(
                results,
                indent=1,
                default=lambda v: None if isinstance(v, float) and math.isnan(v) else v,
            )
        )


if __name__ == "__main__":
    main()
