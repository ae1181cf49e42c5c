"""The `artifact_store` setting: a directory or s3://bucket/prefix, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import ConfigError, load_settings
from control_plane.artifacts import (
    BadArtifactStore,
    DirectoryLocation,
    S3Location,
    parse_artifact_store,
)
from control_plane.settings import ControlPlaneSettings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/srv/tether/artifacts", DirectoryLocation(Path("/srv/tether/artifacts"))),
        ("relative/artifacts", DirectoryLocation(Path("relative/artifacts"))),
        ("file:///mnt/shared/tether", DirectoryLocation(Path("/mnt/shared/tether"))),
        ("file://localhost/mnt/x", DirectoryLocation(Path("/mnt/x"))),
        ("s3://models", S3Location("models", "")),
        ("s3://models/", S3Location("models", "")),
        ("s3://models/tether", S3Location("models", "tether")),
        ("s3://models/tether/prod/", S3Location("models", "tether/prod")),
        ("S3://my.bucket-1/a", S3Location("my.bucket-1", "a")),
    ],
)
def test_good_values_parse(value: str, expected):
    assert parse_artifact_store(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/srv/\0x", "control character"),
        ("gs://bucket/prefix", "unsupported scheme 'gs'"),
        ("https://s3.amazonaws.com/bucket", "unsupported scheme 'https'"),
        ("s3:/bucket", "two slashes"),
        ("s3://", "bucket name is empty"),
        ("s3:///prefix", "bucket name is empty"),
        ("s3://ab", "2 characters; S3 allows 3 to 63"),
        ("s3://" + "a" * 64, "64 characters"),
        ("s3://My_Bucket", "invalid bucket name 'My_Bucket'"),
        ("s3://-bucket", "invalid bucket name"),
        ("s3://bucket-", "invalid bucket name"),
        ("s3://buck..et", "no '..'"),
        ("s3://192.168.1.10", "IP address"),
        ("s3://key:secret@bucket/p", "credentials do not belong in the URL"),
        ("s3://bucket:9000/p", "no port in the bucket"),
        ("s3://bucket/p?region=eu", "no query or fragment"),
        ("s3://bucket/a//b", "empty segment"),
        ("s3://bucket/a/../b", "'..' segment"),
        ("s3://bucket/a\\b", "backslash"),
        ("s3://bucket/" + "p" * 600, "over 512 characters"),
        ("file://server/share", "a file URL names a local path"),
        ("file:/x", "file:///absolute/path"),
    ],
)
def test_bad_values_are_refused_saying_what_is_wrong(value: str, message: str):
    with pytest.raises(BadArtifactStore, match=message.replace("?", r"\?")) as caught:
        parse_artifact_store(value)
    if value.strip() and "\0" not in value:
        assert repr(value)[:20] in str(caught.value)  # the message quotes what was given


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"artifact_store": "s3://ab"}, "artifact_store: .*3 to 63"),
        ({"artifact_store_endpoint": "minio:9000"}, "expected http"),
        ({"artifact_store_endpoint": "http://k:s@minio:9000"}, "credentials do not belong"),
        ({"artifact_presign_ttl": 5}, "artifact_presign_ttl"),
        ({"artifact_presign_ttl": 8 * 24 * 3600}, "artifact_presign_ttl"),
        ({"artifact_presign": "sometimes"}, "artifact_presign"),
    ],
)
def test_bad_settings_fail_loading_naming_the_setting(values, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(ControlPlaneSettings, overrides=values, environ={})


def test_the_store_comes_from_the_environment_and_defaults_to_the_data_dir(tmp_path):
    default = load_settings(ControlPlaneSettings, overrides={"data_dir": tmp_path}, environ={})
    assert default.artifact_location == DirectoryLocation(tmp_path / "artifacts")
    environ = {
        "TETHER_ARTIFACT_STORE": "s3://models/tether",
        "TETHER_ARTIFACT_STORE_ENDPOINT": "http://127.0.0.1:9000",
        "TETHER_ARTIFACT_PRESIGN": "false",
    }
    chosen = load_settings(ControlPlaneSettings, environ=environ)
    assert chosen.artifact_location == S3Location("models", "tether")
    assert chosen.artifact_store_endpoint == "http://127.0.0.1:9000"
    assert chosen.artifact_presign is False
    assert chosen.artifact_presign_ttl == 300


# --- properties ---------------------------------------------------------------------------

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
BUCKET = (
    st.lists(LABEL, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda name: 3 <= len(name) <= 63 and not name.replace(".", "").isdigit())
)
SEGMENT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="/\\?#"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
PREFIX = st.lists(SEGMENT, max_size=4).map("/".join).filter(lambda p: len(p) <= 512)


@settings(max_examples=300, deadline=None)
@given(bucket=BUCKET, prefix=PREFIX)
def test_a_valid_s3_location_round_trips_through_its_text(bucket: str, prefix: str):
    parsed = parse_artifact_store(f"s3://{bucket}/{prefix}")
    assert parsed == S3Location(bucket, prefix)
    assert parse_artifact_store(str(parsed)) == parsed
    assert parsed.key("sha256", "d") == (f"{prefix}/sha256/d" if prefix else "sha256/d")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_with_bad_artifact_store(value: str):
    try:
        parsed = parse_artifact_store(value)
    except BadArtifactStore as error:
        assert str(error)
        return
    if isinstance(parsed, S3Location):
        assert 3 <= len(parsed.bucket) <= 63
        assert not parsed.prefix.startswith("/") and not parsed.prefix.endswith("/")
        assert "//" not in parsed.prefix
    else:
        assert isinstance(parsed.path, Path)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"s3://[^/]{0,70}(/.{0,20})?", fullmatch=True))
def test_any_s3_url_parses_to_a_valid_bucket_or_is_refused(value: str):
    try:
        parsed = parse_artifact_store(value)
    except BadArtifactStore:
        return
    assert isinstance(parsed, S3Location)
    assert parsed.bucket == parsed.bucket.lower()
    assert ".." not in parsed.bucket
