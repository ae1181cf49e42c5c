"""A stand-in S3 for the tests: moto's standalone server on loopback, a fresh bucket per test.

No S3-compatible server is packaged for this machine, so moto's `ThreadedMotoServer` plays the
part: one per test process, on 127.0.0.1 and a free port, reached over real HTTP by boto3 and by
agents following presigned URLs. Without boto3 or moto the tests that need it skip, except in
CI, where a missing stand-in is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.processes import free_port

# moto accepts any credentials; these keep boto3 off the developer's own (~/.aws, SSO...).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "tether-test",
    "AWS_SECRET_ACCESS_KEY": "tether-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/tether-test-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/tether-test-aws-credentials",
}


@dataclass
class S3Bucket:
    """A bucket on the stand-in server, and how a control plane is pointed at it."""

    endpoint: str
    name: str
    client: Any

    def store_url(self, prefix: str = "tether") -> str:
        return f"s3://{self.name}/{prefix}" if prefix else f"s3://{self.name}"

    def settings(self, prefix: str = "tether", **more: Any) -> dict[str, Any]:
        """App settings for a control plane on this bucket."""
        return {
            "artifact_store": self.store_url(prefix),
            "artifact_store_endpoint": self.endpoint,
            **more,
        }

    def environ(self, prefix: str = "tether") -> dict[str, str]:
        """Environment variables for a `tether server` process on this bucket."""
        return {
            **CREDENTIALS,
            "TETHER_ARTIFACT_STORE": self.store_url(prefix),
            "TETHER_ARTIFACT_STORE_ENDPOINT": self.endpoint,
        }

    def object_keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def multipart_uploads(self) -> list[str]:
        answer = self.client.list_multipart_uploads(Bucket=self.name)
        return [upload["Key"] for upload in answer.get("Uploads", [])]

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)


def _stand_in_missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed, and CI must test the S3 artifact store")
    pytest.skip(f"{what} is not installed (pip install 'tether[s3]' 'moto[server]')")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server for this test process."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        _stand_in_missing("boto3")
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        _stand_in_missing("moto[server]")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """An empty bucket of its own for this test, with boto3's credentials in the environment."""
    import boto3
    from botocore.config import Config

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    client = boto3.session.Session().client(
        "s3", endpoint_url=s3_endpoint, config=Config(s3={"addressing_style": "path"})
    )
    name = f"tether-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return S3Bucket(endpoint=s3_endpoint, name=name, client=client)
