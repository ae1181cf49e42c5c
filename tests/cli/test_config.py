"""Where the CLI finds its server and token, and what it says when the server is not there."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from common.cli import cli
from control_plane.cli.config import CliConfigError, config_path, resolve_target
from tests.support.processes import free_port


def write_config(config_home: Path, text: str) -> Path:
    path = config_home / "tether" / "cli.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_path_honours_xdg(tmp_path):
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "tether" / "cli.toml"
    assert config_path({}) == Path.home() / ".config" / "tether" / "cli.toml"


def test_default_url_and_no_token(tmp_path):
    target = resolve_target(None, None, {"XDG_CONFIG_HOME": str(tmp_path)})
    assert (target.url, target.token, target.token_source) == (
        "http://127.0.0.1:8500",
        None,
        "nowhere",
    )


@pytest.mark.parametrize(
    ("flags", "environ", "expected"),
    [
        ((None, None), {}, ("http://file:1", "file-token")),
        (
            (None, None),
            {"TETHER_URL": "http://env:2", "TETHER_TOKEN": "env-token"},
            ("http://env:2", "env-token"),
        ),
        (
            ("http://flag:3/", "flag-token"),
            {"TETHER_URL": "http://env:2", "TETHER_TOKEN": "e"},
            ("http://flag:3", "flag-token"),
        ),
        ((None, None), {"TETHER_TOKEN": "env-token"}, ("http://file:1", "env-token")),
    ],
)
def test_flags_beat_environment_beat_file(isolated_cli, flags, environ, expected):
    path = write_config(isolated_cli, 'url = "http://file:1"\ntoken = "file-token"\n')
    target = resolve_target(*flags, {"XDG_CONFIG_HOME": str(isolated_cli), **environ})
    assert (target.url, target.token) == expected
    if expected[1] == "file-token":
        assert target.token_source == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("url = ", "cannot read"),
        ('colour = "blue"\n', "unknown key(s) colour"),
        ("token = 42\n", "token must be a string"),
    ],
)
def test_a_bad_config_file_is_named(isolated_cli, text, message):
    path = write_config(isolated_cli, text)
    with pytest.raises(CliConfigError, match=r"cli\.toml") as raised:
        resolve_target(None, None, {"XDG_CONFIG_HOME": str(isolated_cli)})
    assert message in str(raised.value) and str(path) in str(raised.value)


def test_the_cli_reads_cli_toml(tether, isolated_cli):
    write_config(isolated_cli, f'url = "http://tether.test"\ntoken = "{tether.admin_token}"\n')
    assert "No models yet" in tether.run("model", "list", token=None, ok=True).stdout


def test_a_bad_config_file_is_a_clean_error(tether, isolated_cli):
    write_config(isolated_cli, "url = [")
    result = tether.run("env", "list", token=None, ok=False)
    assert result.exit_code == 1 and "cli.toml" in result.stderr
    assert "Traceback" not in result.output


def test_no_token_says_where_to_put_one(tether):
    result = tether.run("env", "list", token=None, ok=False)
    assert "401 unauthenticated: missing bearer token" in result.stderr
    assert "use --token, TETHER_TOKEN or 'token' in cli.toml" in result.stderr


def test_an_unreachable_server_is_named_without_a_traceback():
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["env", "list", "--url", url, "--token", "t"])
    assert result.exit_code == 1
    assert f"cannot reach the control plane at {url}" in result.stderr
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_a_bare_transport_as_obj_also_works(app, admin_token):
    # `tether agent` takes a transport as its click obj; one obj then serves every command.
    result = CliRunner().invoke(
        cli,
        ["env", "list", "--url", "http://tether.test", "--token", admin_token],
        obj=httpx.WSGITransport(app=app),
    )
    assert result.exit_code == 0 and "No environments yet" in result.stdout


def test_tls_files_come_from_flags_then_cli_toml_relative_to_it(isolated_cli):
    from common.tls import TlsFiles

    path = write_config(
        isolated_cli, 'ca_file = "ca.pem"\nclient_cert = "~/me.pem"\nclient_key = "/k/me.key"\n'
    )
    target = resolve_target(None, None, {"XDG_CONFIG_HOME": str(isolated_cli)})
    assert target.tls == TlsFiles(path.parent / "ca.pem", Path.home() / "me.pem", Path("/k/me.key"))
    flagged = resolve_target(
        None, None, {"XDG_CONFIG_HOME": str(isolated_cli)}, tls=TlsFiles(Path("/flag/ca.pem"))
    )
    assert flagged.tls.ca_file == Path("/flag/ca.pem")
    assert flagged.tls.client_key == Path("/k/me.key")


def test_a_bad_ca_file_is_named_before_anything_is_sent(isolated_cli, tmp_path):
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(200))
    result = CliRunner().invoke(
        cli,
        ["model", "list", "--url", "https://tether.test", "--token", "t"],
        env={"TETHER_CA_FILE": str(tmp_path / "nope.pem")},
        obj=transport,
    )
    assert result.exit_code == 1
    assert f"CA file {tmp_path / 'nope.pem'} does not exist" in result.output
    assert seen == []
