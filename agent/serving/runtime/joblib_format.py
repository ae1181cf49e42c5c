"""Load models saved with joblib.

joblib files are pickles: loading one runs whatever code its author chose. Tether therefore
loads a joblib artifact only after the caller has checked the file's sha256 against the
manifest signed by the control plane, so the bytes are exactly the ones that were registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib

NAME = "joblib"


def load(path: Path) -> Any:
    """Unpickle the estimator at `path`, whose digest the caller has already verified."""
    return joblib.load(path)
