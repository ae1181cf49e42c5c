"""`tether bundle export` and `tether reports import`: the control plane's side of air-gapped sites.

A bundle goes out on a USB stick (or a data diode) to `tether agent import-bundle`; the
reports come back from `tether agent export-reports` and an acknowledgement file goes out
again to `tether agent import-ack`. docs/air-gapped.md walks through the round trip.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from control_plane.cli.client import OperatorClient
from control_plane.cli.options import json_option, name_argument, with_client
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


@click.command(name="import")
@click.argument(
    "export_file", metavar="FILE", type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--ack-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the acknowledgement for the agent [FILE with .ack.json].",
)
@json_option
@with_client
def import_reports(
    client: OperatorClient, export_file: Path, ack_out: Path | None, as_json: bool
) -> None:
    """Import an offline agent's signed report export; write the acknowledgement to carry back.

    The control plane checks the agent's signature and stores each report once (importing the
    same file again stores nothing new); a tampered file is refused whole. Take the
    acknowledgement back to the site for `tether agent import-ack`, which clears the outbox.

    \b
    Example:
      tether reports import edge-7-reports.json --ack-out edge-7-reports.ack.json
    """
    target = ack_out or export_file.with_name(f"{export_file.stem}.ack.json")
    ack = client.import_reports(export_file.read_bytes())
    try:
        target.write_text(ack.model_dump_json(indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise click.ClickException(
            f"reports stored, but cannot write {target}: {error.strerror or error}; import the "
            "same file again to get the acknowledgement (nothing is stored twice)"
        ) from None
    if as_json:
        echo_json({**ack.model_dump(mode="json", exclude={"signatures"}), "file": str(target)})
        return
    click.echo(
        f"Agent {ack.agent_id}: {ack.stored} report(s) stored, {ack.duplicates} already there."
    )
    click.echo(f"Acknowledgement: {target}. On the site: tether agent import-ack {target.name}")


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
