"""Regenerate the endpoint reference in docs/api.md from the declared API operations.

Usage: python scripts/api_docs.py [--check]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from control_plane.api.routing import OPERATIONS  # noqa: E402
from control_plane.app import create_app  # noqa: E402

DOC = ROOT / "docs" / "api.md"
BEGIN = "<!-- BEGIN GENERATED: scripts/api_docs.py -->"
END = "<!-- END GENERATED -->"


def reference() -> str:
    """Render one table row per operation, grouped by tag."""
    with tempfile.TemporaryDirectory() as data_dir:
        create_app({"data_dir": data_dir}).extensions["tether"].close()
    lines: list[str] = []
    for tag in sorted({op.tag for op in OPERATIONS}):
        lines += [
            f"### {tag.capitalize()}",
            "",
            "| Method | Path | Roles | Success | Errors | What |",
            "|---|---|---|---|---|---|",
        ]
        for op in sorted(
            (op for op in OPERATIONS if op.tag == tag), key=lambda o: (o.path, o.method)
        ):
            roles = "public" if op.roles is None else ", ".join(sorted(r.value for r in op.roles))
            status = str(op.status) + (f"/{op.other_status}" if op.other_status else "")
            success = f"{status} {op.response.__name__}" if op.response else status
            errors = ", ".join(map(str, op.errors)) or "-"
            cells = [op.method.upper(), f"`{op.path}`", roles, success, errors, op.summary]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def rendered(current: str) -> str:
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{reference()}{END}{tail}"


def main() -> int:
    current = DOC.read_text()
    updated = rendered(current)
    if "--check" in sys.argv:
        if updated != current:
            print("docs/api.md is out of date: run python scripts/api_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(updated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
