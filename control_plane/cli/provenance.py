"""Find what `tether model push` records about a version: code revision and input schema."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path
from typing import Any


class InputExampleError(ValueError):
    """The input example cannot describe the model's inputs."""


def code_revision(cwd: Path | None = None) -> str | None:
    """Return the git commit checked out at `cwd`, '-dirty' if tracked files changed, else None."""
    head = _git(["rev-parse", "--verify", "HEAD"], cwd)
    if not head:
        return None
    # Untracked files (data, build output) are common and do not change the code that ran.
    changes = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return f"{head}-dirty" if changes else head


def _git(args: list[str], cwd: Path | None) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git on this machine: record no revision rather than fail the push
    return done.stdout.strip() if done.returncode == 0 else None


def feature_names(path: Path) -> list[str] | None:
    """Load a joblib artifact and return its estimator's `feature_names_in_`, if it has them.

    This unpickles the file, which runs code from it: call it only on a file the user is
    pushing from their own machine, never on one downloaded from elsewhere.
    """
    import joblib  # slow to import: only `model push` needs it

    with warnings.catch_warnings():
        # A model saved by another scikit-learn version warns on load; its names are still right.
        warnings.simplefilter("ignore")
        estimator = joblib.load(path)
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else [str(name) for name in names]


def example_types(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Infer each feature's type (number, integer, string, boolean) from example rows."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        for name, value in row.items():
            if value is not None:
                seen.setdefault(name, set()).add(_json_kind(name, value))
    types = {}
    for name, kinds in seen.items():
        if kinds <= {"integer", "number"}:
            types[name] = "number" if "number" in kinds else "integer"
        elif len(kinds) == 1:
            types[name] = kinds.pop()
        else:
            raise InputExampleError(
                f"feature {name!r} mixes {' and '.join(sorted(kinds))} values in the input example"
            )
    return types


def _json_kind(name: str, value: Any) -> str:
    if isinstance(value, bool):  # before int: True is an int in Python
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise InputExampleError(
        f"feature {name!r} has a nested value in the input example; "
        "features are numbers, integers, strings or booleans"
    )


def input_schema(
    names: list[str] | None, example: list[dict[str, Any]] | None
) -> tuple[list[dict[str, str]] | None, list[str]]:
    """Build the input schema from feature names and example rows; also return notes for people.

    Names come from the estimator where it has them, else from the example's keys; types come
    from the example where it has the feature, else "number".
    """
    types = example_types(example) if example else {}
    notes: list[str] = []
    if names is None and example:
        names = list(dict.fromkeys(key for row in example for key in row))
    if names is None:
        return None, ["no input schema: no feature_names_in_ found and no --input-example given"]
    if example:
        extra = sorted(set(types) - set(names))
        if extra:
            notes.append(f"the input example has features the model does not: {', '.join(extra)}")
    return [{"name": name, "type": types.get(name, "number")} for name in names], notes
