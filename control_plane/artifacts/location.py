"""Where artifacts live: the `artifact_store` setting, parsed into a directory or an S3 prefix.

    /srv/tether/artifacts          a directory (relative paths are from the working directory)
    file:///srv/tether/artifacts   the same, as a URL
    s3://bucket                    the root of an S3 bucket
    s3://bucket/some/prefix        keys under `some/prefix/` of that bucket

Credentials never belong here: boto3 finds them in its usual chain (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role...), so a URL carrying any is refused.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

# A scheme, then ":/": anything that looks like a URL is read as one, so a mistyped
# `s4://bucket` is an error rather than a directory named "s4:".
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):/")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
MAX_PREFIX_LENGTH = 512


class BadArtifactStore(ValueError):
    """An `artifact_store` value that names no directory or S3 bucket Tether can use."""


@dataclass(frozen=True)
class DirectoryLocation:
    """Artifacts in a directory: local, or a mount several replicas share."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class S3Location:
    """Artifacts under a prefix of an S3 (or S3-compatible) bucket."""

    bucket: str
    prefix: str = ""  # without leading or trailing "/"; "" for the bucket's root

    def key(self, *parts: str) -> str:
        """Return the object key of `parts` under the prefix."""
        return "/".join([self.prefix, *parts] if self.prefix else parts)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


ArtifactLocation = DirectoryLocation | S3Location


def parse_artifact_store(value: str) -> ArtifactLocation:
    """Parse an `artifact_store` value; raise BadArtifactStore saying what is wrong."""
    if not value.strip():
        raise BadArtifactStore("artifact_store is empty: give a directory or s3://bucket/prefix")
    if "\0" in value or any(ord(char) < 32 for char in value):
        raise BadArtifactStore(f"artifact_store {value!r} contains a control character")
    match = _URL.match(value)
    if match is None:
        return DirectoryLocation(Path(value))
    scheme = match["scheme"].lower()
    if scheme == "file":
        return _file_url(value)
    if scheme != "s3":
        raise BadArtifactStore(
            f"artifact_store {value!r}: unsupported scheme {match['scheme']!r}; "
            "use a directory path or s3://bucket/prefix"
        )
    if not value[len(match[0]) :].startswith("/"):
        raise BadArtifactStore(f"artifact_store {value!r}: write s3://bucket/prefix (two slashes)")
    rest = value[len(match[0]) + 1 :]
    if "?" in rest or "#" in rest:
        raise BadArtifactStore(
            f"artifact_store {value!r}: no query or fragment; endpoint and region are the "
            "settings artifact_store_endpoint and artifact_store_region"
        )
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket:
        raise BadArtifactStore(
            f"artifact_store {value!r}: credentials do not belong in the URL; boto3 reads them "
            "from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role"
        )
    if ":" in bucket:
        raise BadArtifactStore(
            f"artifact_store {value!r}: no port in the bucket; an S3-compatible server's address "
            "is the setting artifact_store_endpoint"
        )
    _check_bucket(bucket, value)
    return S3Location(bucket=bucket, prefix=_check_prefix(prefix, value))


def _file_url(value: str) -> DirectoryLocation:
    rest = value.split(":", 1)[1]
    if not rest.startswith("//"):
        raise BadArtifactStore(f"artifact_store {value!r}: write file:///absolute/path")
    host, slash, path = rest[2:].partition("/")
    if host not in ("", "localhost") or not slash:
        raise BadArtifactStore(
            f"artifact_store {value!r}: a file URL names a local path (file:///path); "
            "for a shared directory, mount it and give its path"
        )
    return DirectoryLocation(Path("/" + path))


def _check_bucket(bucket: str, value: str) -> None:
    """Apply S3's bucket naming rules, so a bad name fails at start rather than at first use."""
    where = f"artifact_store {value!r}"
    if not bucket:
        raise BadArtifactStore(f"{where}: the bucket name is empty; write s3://bucket/prefix")
    if not 3 <= len(bucket) <= 63:
        raise BadArtifactStore(
            f"{where}: bucket name {bucket!r} is {len(bucket)} characters; S3 allows 3 to 63"
        )
    if not _BUCKET.match(bucket):
        raise BadArtifactStore(
            f"{where}: invalid bucket name {bucket!r}; use lowercase letters, digits, '.' and "
            "'-', beginning and ending with a letter or digit"
        )
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        raise BadArtifactStore(
            f"{where}: invalid bucket name {bucket!r}; no '..', '.-' or '-.' in a bucket name"
        )
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        return
    raise BadArtifactStore(f"{where}: bucket name {bucket!r} is an IP address; S3 refuses that")


def _check_prefix(prefix: str, value: str) -> str:
    stripped = prefix.strip("/")
    where = f"artifact_store {value!r}"
    if len(stripped) > MAX_PREFIX_LENGTH:
        raise BadArtifactStore(f"{where}: the prefix is over {MAX_PREFIX_LENGTH} characters")
    segments = stripped.split("/") if stripped else []
    if any(segment == "" for segment in segments):
        raise BadArtifactStore(f"{where}: the prefix {prefix!r} has an empty segment ('//')")
    if any(segment in (".", "..") for segment in segments):
        raise BadArtifactStore(f"{where}: the prefix {prefix!r} has a '.' or '..' segment")
    if "\\" in stripped:
        raise BadArtifactStore(f"{where}: the prefix {prefix!r} has a backslash")
    return stripped
