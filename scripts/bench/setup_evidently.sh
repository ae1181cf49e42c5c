#!/usr/bin/env bash
# Build .venv-evidently: Evidently for the drift benchmark only, never a runtime dependency.
# It lives in its own virtualenv because Evidently 0.7.23 does not import with pandas 3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${EVIDENTLY_VENV:-$ROOT/.venv-evidently}"
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import evidently, pandas, pyarrow" 2>/dev/null; then
    echo "$VENV is ready"
    exit 0
fi

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# pandas<3: Evidently 0.7.23 fails to import with pandas 3; pyarrow reads the shared benchmark data.
"$VENV/bin/python" -m pip install --quiet "evidently==0.7.23" "pandas>=2.2,<3" "numpy<2.3" "pyarrow"
"$VENV/bin/python" -c "import evidently; from evidently.presets import DataDriftPreset; print('evidently', evidently.__version__)"
