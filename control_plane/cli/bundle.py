"""`tether bundle export`: signed bundles for air-gapped sites, the control plane's side.

A bundle goes out on a USB stick (or a data diode) to `tether agent import-bundle`; the
reports come back from `tether agent export-reports` to `tether reports import` (reports.py).
docs/air-gapped.md walks through the round trip.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from common.cli_options import json_option
from control_plane.cli.client import OperatorClient
from control_plane.cli.options import name_argument, with_client
from control_plane.cli.output import echo_json


@click.group()
def bundle() -> None:
    """Export signed bundles for agents that cannot reach the control plane.

    \b
    Example:
      tether bundle export edge --out edge.tether-bundle.tar
    """


@bundle.command(name="export")
@name_argument("environment", "environment name", "ENV")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The bundle file to write (a tar; replaced only once complete).",
)
@json_option
@with_client
def export_bundle(client: OperatorClient, environment: str, out: Path, as_json: bool) -> None:
    """Download an environment's signed bundle: its manifest and every file it names.

    The bundle is streamed to a temporary file beside --out with a progress bar, and renamed
    to --out only once all of it arrived. Carry it to the site and run `tether agent
    import-bundle FILE` there.

    \b
    Example:
      tether bundle export edge --out /media/usb/edge.tether-bundle.tar
    """
    temporary = out.with_name(f".{out.name}.part")
    try:
        with open(temporary, "wb") as handle, _progress(visible=not as_json) as (start, report):
            size = client.export_bundle(environment, handle, on_start=start, on_progress=report)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, out)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {out}: {error.strerror or error}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if as_json:
        echo_json({"environment": environment, "file": str(out), "bytes": size})
        return
    click.echo(f"Bundle of {environment} written to {out} ({size} bytes).")
    click.echo(f"On the site: tether agent import-bundle {out.name}")


@contextlib.contextmanager
def _progress(
    visible: bool,
) -> Iterator[tuple[Callable[[int | None], None], Callable[[int], None]]]:
    """Yield (start, report) callbacks drawing a bar from the Content-Length on a terminal."""
    stream = sys.stderr  # looked up now: CliRunner swaps it
    if not visible or not stream.isatty():
        yield (lambda length: None), (lambda position: None)
        return
    with contextlib.ExitStack() as stack:
        bars: list[Any] = []

        def start(length: int | None) -> None:
            bar: Any = click.progressbar(
                length=length, label="Downloading bundle", file=stream, show_percent=True
            )
            bars.append(stack.enter_context(bar))

        def report(position: int) -> None:
            if bars:
                bars[0].update(max(0, position - bars[0].pos))

        yield start, report
