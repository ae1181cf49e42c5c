"""Run Evidently's DataDriftPreset on the benchmark's saved frames and print timing and decisions.

Runs inside .venv-evidently (see setup_evidently.sh), never in Tether's environment:

    .venv-evidently/bin/python scripts/bench/drift_evidently_worker.py DATA_DIR

DATA_DIR holds reference.npy, current.npy and names.json written by scripts/bench/drift.py. One
JSON object goes to stdout: seconds, peak RSS, Evidently's version and its per-column decision.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(data_dir: str) -> None:
    """Time one DataDriftPreset report on the saved frames and print the result as JSON."""
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    folder = Path(data_dir)
    names = json.loads((folder / "names.json").read_text())
    reference = pd.DataFrame(np.load(folder / "reference.npy"), columns=names, copy=False)
    current = pd.DataFrame(np.load(folder / "current.npy"), columns=names, copy=False)
    definition = DataDefinition(numerical_columns=names)

    start, cpu = time.perf_counter(), time.process_time()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu

    result = snapshot.dict()
    scores = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            scores[config["column"]] = {
                "method": config["method"],
                "threshold": config["threshold"],
                "score": metric["value"],
            }
    # Evidently's own verdict per column is the status of its "Value Drift" test.
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type", "").endswith("ValueDrift"):
            scores[params["column"]]["drifted"] = test["status"] == "FAIL"
    print(
        json.dumps(
            {
                "evidently": evidently.__version__,
                "pandas": pd.__version__,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "features": scores,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
