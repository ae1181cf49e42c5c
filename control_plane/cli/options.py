"""Options and arguments the operator commands share, as decorators.

`with_client` is the one place where a command gets its API client and where the client's
errors become `click.ClickException`s carrying the API's message.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from common.cli_options import tls_options
from common.errors import ApiResponseError, TetherError
from common.names import InvalidName, check_name
from common.tls import TlsFiles
from control_plane.cli.client import ClientFactory
from control_plane.cli.config import CliConfigError, Target, resolve_target

F = TypeVar("F", bound=Callable[..., Any])


def with_client(command: F) -> F:
    """Add --url, --token and the TLS options; call the command with an open OperatorClient."""

    @click.option(
        "--url",
        metavar="URL",
        help="Control plane URL [$TETHER_URL, cli.toml, http://127.0.0.1:8500].",
    )
    @click.option("--token", metavar="TOKEN", help="API token [$TETHER_TOKEN, cli.toml].")
    @tls_options
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        url: str | None,
        token: str | None,
        ca_file: Path | None,
        client_cert: Path | None,
        client_key: Path | None,
        **kwargs: Any,
    ) -> Any:
        try:
            target = resolve_target(url, token, tls=TlsFiles(ca_file, client_cert, client_key))
        except CliConfigError as error:
            raise click.ClickException(str(error)) from None
        # Tests hand in a ClientFactory, or a bare transport as `tether agent` takes, as `obj`.
        ctx = click.get_current_context()
        factory = ctx.find_object(ClientFactory) or ClientFactory(
            ctx.find_object(httpx.BaseTransport)
        )
        with api_errors(target), factory.open(target) as client:
            return command(client, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextmanager
def api_errors(target: Target) -> Iterator[None]:
    """Turn the client's errors into ClickExceptions that carry the API's message."""
    try:
        yield
    except ApiResponseError as error:
        raise click.ClickException(describe(error, target)) from None
    except TetherError as error:
        raise click.ClickException(str(error)) from None


def describe(error: ApiResponseError, target: Target) -> str:
    """Write an API error for people: status, code, message, then each named field."""
    lines = [str(error)]
    details = error.details
    if isinstance(details, list):
        lines += [
            f"  {item.get('field', '?')}: {item.get('message', '')}"
            for item in details
            if isinstance(item, dict)
        ]
    elif isinstance(details, dict):
        lines += [f"  {key}: {value}" for key, value in details.items()]
    if error.status == 401 and target.token is None:
        lines.append("  no token given: use --token, TETHER_TOKEN or 'token' in cli.toml")
    return "\n".join(lines)


def reason_option(command: F) -> F:
    """Add --reason, recorded in the environment's audit history."""
    return click.option(
        "--reason", default="", metavar="TEXT", help="Why: recorded in the audit history."
    )(command)


def if_match_option(command: F) -> F:
    """Add --if-match: refuse the change unless the environment is still at that revision."""
    return click.option(
        "--if-match",
        type=click.IntRange(min=0),
        metavar="REVISION",
        help="Change only if the environment is still at this revision (else 412).",
    )(command)


def name_argument(param: str, what: str, metavar: str) -> Callable[[F], F]:
    """Add a positional model or environment name, checked against the name rule."""
    return click.argument(param, metavar=metavar, callback=name_check(what))


def name_check(what: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Return a click callback that refuses a name breaking the name rule (None passes)."""

    def check(ctx: click.Context, parameter: click.Parameter, value: Any) -> Any:
        try:
            return None if value is None else check_name(value, what)
        except InvalidName as error:
            raise click.BadParameter(str(error)) from None

    return check


class JsonValue(click.ParamType):
    """A JSON value given inline or as @FILE, checked against the expected JSON types."""

    name = "json"

    def __init__(self, *expected: type, described: str) -> None:
        self.expected = expected
        self.described = described

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        text = value
        if value.startswith("@"):
            try:
                text = Path(value[1:]).read_text(encoding="utf-8")
            except OSError as error:
                self.fail(f"cannot read {value[1:]}: {error.strerror}", param, ctx)
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            self.fail(f"not valid JSON ({error}): {value[:60]!r}", param, ctx)
        if not isinstance(parsed, self.expected):
            self.fail(f"must be {self.described}, got {_json_type(parsed)}", param, ctx)
        return parsed


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"
