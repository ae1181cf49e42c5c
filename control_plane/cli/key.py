"""`tether key`: the control plane's signing keys (run on the control plane's host)."""

from __future__ import annotations

from pathlib import Path

import click

from common.cli_options import data_dir_option, json_option
from control_plane.cli.output import echo_json
from control_plane.keys import KeyRing

control_plane_data_dir = data_dir_option(
    "The control plane's data directory.", default=Path("./tether-data"), envvar="TETHER_DATA_DIR"
)


def _ring(data_dir: Path) -> KeyRing:
    ring = KeyRing(data_dir / "keys")
    if not ring.index.exists():
        raise click.ClickException(
            f"no signing keys in {data_dir}/keys: start `tether server --data-dir {data_dir}` once"
        )
    return ring


@click.group()
def key() -> None:
    """Show and rotate the keys that sign manifests and bundles.

    \b
    Example:
      tether key show --data-dir /var/lib/tether-server
    """


@key.command()
@control_plane_data_dir
@json_option
def show(data_dir: Path, as_json: bool) -> None:
    """Print the signing public keys and their fingerprints, newest first.

    Agents pin a fingerprint with `tether agent enroll --pin FINGERPRINT`.

    \b
    Example:
      tether key show --data-dir ./tether-data
    """
    keys = _ring(data_dir).current().public
    if as_json:
        echo_json({"keys": [k.model_dump() for k in keys]})
        return
    for index, described in enumerate(keys):
        role = "signing" if index == 0 else "co-signing (previous)"
        click.echo(f"{described.fingerprint}  key {described.key_id}  {role}")
        click.echo(f"  public key: {described.public_key}")


@key.command()
@control_plane_data_dir
@json_option
def rotate(data_dir: Path, as_json: bool) -> None:
    """Make a new signing key; the previous key co-signs, so enrolled agents follow.

    A running server picks the new key up on its next manifest, without a restart.

    \b
    Example:
      tether key rotate --data-dir ./tether-data
    """
    described = _ring(data_dir).rotate()
    if as_json:
        echo_json(described.model_dump())
        return
    click.echo(f"New signing key {described.key_id}: {described.fingerprint}")
    click.echo("Manifests are now signed by it and by the previous key.")
