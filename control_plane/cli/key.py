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
secrets_dir_option = click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="TETHER_SECRETS_DIR",
    help="The secrets dir replicas share, when the keys are not in the data dir.",
)


def _ring(data_dir: Path, secrets_dir: Path | None) -> KeyRing:
    home = secrets_dir or data_dir
    ring = KeyRing(home / "keys")
    if not ring.index.exists():
        raise click.ClickException(
            f"no signing keys in {home}/keys: start `tether server` (or run `tether server "
            "migrate`) with that directory once"
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
@secrets_dir_option
@json_option
def show(data_dir: Path, secrets_dir: Path | None, as_json: bool) -> None:
    """Print the signing public keys and their fingerprints, newest first.

    Agents pin a fingerprint with `tether agent enroll --pin FINGERPRINT`.

    \b
    Example:
      tether key show --data-dir ./tether-data
    """
    keys = _ring(data_dir, secrets_dir).current().public
    if as_json:
        echo_json({"keys": [k.model_dump() for k in keys]})
        return
    for index, described in enumerate(keys):
        role = "signing" if index == 0 else "co-signing (previous)"
        click.echo(f"{described.fingerprint}  key {described.key_id}  {role}")
        click.echo(f"  public key: {described.public_key}")


@key.command()
@control_plane_data_dir
@secrets_dir_option
@json_option
def rotate(data_dir: Path, secrets_dir: Path | None, as_json: bool) -> None:
    """Make a new signing key; the previous key co-signs, so enrolled agents follow.

    A running server picks the new key up on its next manifest, without a restart; replicas
    sharing the secrets dir all do.

    \b
    Example:
      tether key rotate --data-dir ./tether-data
      tether key rotate --secrets-dir /srv/tether/secrets
    """
    described = _ring(data_dir, secrets_dir).rotate()
    if as_json:
        echo_json(described.model_dump())
        return
    click.echo(f"New signing key {described.key_id}: {described.fingerprint}")
    click.echo("Manifests are now signed by it and by the previous key.")
