"""Options both CLIs share (`tether` and `tether agent`), as decorators."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_option(command: F) -> F:
    """Add --json: print the answer as JSON, for scripts, instead of text for people."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts."
    )(command)


def data_dir_option(
    help: str, default: Path | None = None, envvar: str | None = None
) -> Callable[[F], F]:
    """Add --data-dir: the directory a side keeps its state in."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        envvar=envvar,
        help=help,
    )


def tls_options(command: F) -> F:
    """Add --ca-file, --client-cert and --client-key: how to reach a control plane over TLS."""
    file = click.Path(dir_okay=False, path_type=Path)
    for name, variable, help in reversed(
        (
            (
                "--ca-file",
                "TETHER_CA_FILE",
                "PEM CA certificate to trust instead of the system's (a private CA)",
            ),
            (
                "--client-cert",
                "TETHER_CLIENT_CERT",
                "PEM client certificate, where the control plane requires one",
            ),
            (
                "--client-key",
                "TETHER_CLIENT_KEY",
                "The client certificate's PEM private key (unencrypted, mode 0600)",
            ),
        )
    ):
        command = click.option(
            name, type=file, metavar="FILE", envvar=variable, help=f"{help} [${variable}]."
        )(command)
    return command
