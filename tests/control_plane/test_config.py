"""Settings: defaults < TOML file < TETHER_* variables < explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError, load_settings
from control_plane.settings import ControlPlaneSettings

EXAMPLE = Path(__file__).parents[2] / "config" / "control-plane.toml"


def test_toml_then_environment_then_overrides(tmp_path: Path):
    path = tmp_path / "cp.toml"
    path.write_text('port = 9000\npoll_interval = 12\ndata_dir = "/srv/tether"\n')
    settings = load_settings(
        ControlPlaneSettings,
        path,
        environ={"TETHER_POLL_INTERVAL": "7", "TETHER_STALE_AFTER": "99"},
        overrides={"port": 9100, "host": None},
    )
    assert (settings.port, settings.poll_interval, settings.stale_after) == (9100, 7, 99)
    assert settings.data_dir == Path("/srv/tether")
    assert settings.host == "127.0.0.1"


def test_the_shipped_example_loads_and_names_every_setting():
    settings = load_settings(ControlPlaneSettings, EXAMPLE, environ={})
    text = EXAMPLE.read_text()
    for name in ControlPlaneSettings.model_fields:
        assert f"{name} =" in text, f"config/control-plane.toml does not document {name}"
    assert settings.port == 8500


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("port = 'high'\n", {}, "port"),
        ("", {"TETHER_PORT": "99999"}, "port"),
        ("colour = 'blue'\n", {}, "colour"),
        ("port = \n", {}, "cp.toml"),
        ("", {"TETHER_WORKERS": "0"}, "workers"),
    ],
)
def test_bad_settings_name_the_problem(tmp_path: Path, toml, environ, message):
    path = tmp_path / "cp.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(ControlPlaneSettings, path, environ=environ)


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(ControlPlaneSettings, tmp_path / "nope.toml", environ={})
