"""Artifacts under an S3 prefix, through boto3 (the optional extra `tether[s3]`).

    <prefix>/sha256/<digest>         the artifacts, content-addressed
    <prefix>/incoming/upload-<unix time>-<uuid>  an upload on its way (multipart, or one object)

An upload streams to a temporary key in parts of PART_SIZE bytes while it is hashed, so the
control plane holds at most one part in memory and never a full copy on disk. Once kept, the
temporary object is copied server-side to its digest and deleted; an upload refused or cut off
is aborted, so no part lingers (and a crash's leftovers are swept by age, see bootstrap).

boto3 is imported on first use only: the embedded default never needs it. Its client is made
once per process, since a client made before gunicorn forks must not be shared by workers.
Credentials come from boto3's own chain (environment, profile, instance role), never from
Tether's settings.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from control_plane.artifacts.location import S3Location
from control_plane.artifacts.store import (
    ArtifactMissing,
    ArtifactStore,
    ArtifactStoreError,
    ArtifactStoreUnavailable,
    Upload,
)

log = logging.getLogger("tether.control_plane.artifacts")

# S3 takes parts of 5 MiB to 5 GiB (the last may be smaller) and at most 10,000 of them:
# 8 MiB parts carry up to 78 GiB, more than max_artifact_bytes is sensibly set to.
PART_SIZE = 8 * 1024 * 1024
# CopyObject copies up to 5 GiB in one request; beyond, the copy goes part by part.
SINGLE_COPY_LIMIT = 5 * 1024**3
COPY_PART_SIZE = 512 * 1024 * 1024


class S3Store(ArtifactStore):
    """Store and find artifacts by digest under a prefix of an S3 bucket."""

    def __init__(
        self,
        location: S3Location,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        presign: bool = True,
        presign_ttl: int = 300,
        connect_timeout: float = 5.0,
    ) -> None:
        self.location = location
        self.bucket = location.bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.presign = presign
        self.presign_ttl = presign_ttl
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._client_pid: int | None = None
        self._s3: Any = None

    @property
    def description(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"{self.location}{where}"

    @property
    def client(self) -> Any:
        """The boto3 S3 client of this process."""
        with self._lock:
            if self._client_pid != os.getpid():
                self._s3 = self._new_client()
                self._client_pid = os.getpid()
            return self._s3

    def _new_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ArtifactStoreError(
                f"artifact store {self.location}: boto3 is not installed; "
                "install the extra: pip install 'tether[s3]'"
            ) from None
        config = Config(
            signature_version="s3v4",
            # S3-compatible servers (MinIO, Ceph, moto) answer on one host: path-style keys.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            connect_timeout=self.connect_timeout,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            # Only what S3 requires: several S3-compatible servers refuse the newer default
            # checksums, and every artifact's sha256 is checked end to end anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        return session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )

    def key(self, *parts: str) -> str:
        return self.location.key(*parts)

    def _digest_key(self, digest: str) -> str:
        return self.key("sha256", digest)

    @contextmanager
    def calls(self, doing: str) -> Iterator[None]:
        """Turn botocore's errors into ArtifactStoreUnavailable, saying what was being done."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as error:
            raise ArtifactStoreUnavailable(
                f"artifact store {self.description}: {doing}: {_client_error(error, self.bucket)}"
            ) from None
        except BotoCoreError as error:
            raise ArtifactStoreUnavailable(
                f"artifact store {self.description}: {doing}: {_botocore_error(error)}"
            ) from None

    # --- start and readiness ---------------------------------------------------------------

    def prepare(self) -> None:
        with self.calls(f"checking bucket {self.bucket!r}"):
            self.client.head_bucket(Bucket=self.bucket)

    def check(self) -> str:
        try:
            self.prepare()
        except ArtifactStoreError as error:
            return f"error: {error}"
        return "ok"

    # --- uploads -----------------------------------------------------------------------------

    def open_upload(self) -> S3Upload:
        # The start time is in the name: the sweep reads an upload's age from it, whatever date
        # an S3-compatible server reports (moto, for one, dates every multipart upload 2010).
        name = f"upload-{int(time.time())}-{uuid.uuid4().hex}"
        return S3Upload(self, self.key("incoming", name))

    def keep(self, upload: Upload) -> tuple[str, int]:
        assert isinstance(upload, S3Upload)
        try:
            upload.finish()
            digest = upload.hexdigest()
            target = self._digest_key(digest)
            if not self.exists(digest):  # else: the same bytes are stored for another version
                self._copy(upload.name, target, upload.size)
        except BaseException:
            self.discard(upload)
            raise
        self._delete_key(upload.name, quietly=True)
        return digest, upload.size

    def _copy(self, source: str, target: str, size: int) -> None:
        with self.calls(f"copying {source} to {target}"):
            if size <= SINGLE_COPY_LIMIT:
                self.client.copy_object(
                    CopySource={"Bucket": self.bucket, "Key": source},
                    Bucket=self.bucket,
                    Key=target,
                )
                return
            from boto3.s3.transfer import TransferConfig

            self.client.copy(
                {"Bucket": self.bucket, "Key": source},
                self.bucket,
                target,
                Config=TransferConfig(
                    multipart_threshold=SINGLE_COPY_LIMIT, multipart_chunksize=COPY_PART_SIZE
                ),
            )

    def discard(self, upload: Upload | IO[bytes]) -> None:
        if not isinstance(upload, S3Upload):
            return
        try:
            upload.abort()
        except ArtifactStoreError as error:
            # The request is over either way; the sweep takes the leftover later.
            log.warning("could not remove the cut-off upload %s: %s", upload.name, error)

    # --- artifacts ---------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        return self._size_of(self._digest_key(digest)) is not None

    def _size_of(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        with self.calls(f"looking up {key}"):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if _error_code(error) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return int(head["ContentLength"])

    def open(self, digest: str) -> IO[bytes]:
        key = self._digest_key(digest)
        size = self._size_of(key)
        if size is None:
            raise ArtifactMissing(digest)
        return io.BufferedReader(S3Reader(self, key, size), buffer_size=1024 * 1024)

    def presigned_url(self, digest: str) -> str | None:
        if not self.presign:
            return None
        with self.calls("presigning a download"):
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._digest_key(digest)},
                ExpiresIn=self.presign_ttl,
            )
        return url

    def delete(self, digest: str) -> None:
        self._delete_key(self._digest_key(digest))

    def _delete_key(self, key: str, *, quietly: bool = False) -> None:
        try:
            with self.calls(f"deleting {key}"):
                self.client.delete_object(Bucket=self.bucket, Key=key)
        except ArtifactStoreError as error:
            if not quietly:
                raise
            log.warning("could not delete %s (the sweep will): %s", key, error)

    # --- sweeps ------------------------------------------------------------------------------

    def sweep_uploads(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        incoming = self.key("incoming") + "/"
        removed = 0
        with self.calls("sweeping cut-off uploads"):
            pages = self.client.get_paginator("list_multipart_uploads")
            for page in pages.paginate(Bucket=self.bucket, Prefix=incoming):
                for part in page.get("Uploads", []):
                    if older_than <= 0 or _started(part["Key"], part["Initiated"]) < cutoff:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=part["Key"], UploadId=part["UploadId"]
                        )
                        removed += 1
            for found in self._objects(incoming):
                if older_than <= 0 or _started(found["Key"], found["LastModified"]) < cutoff:
                    self.client.delete_object(Bucket=self.bucket, Key=found["Key"])
                    removed += 1
        return removed

    def sweep(self, referenced: set[str]) -> list[str]:
        removed = []
        stored = self.key("sha256") + "/"
        with self.calls("sweeping artifacts no version references"):
            for found in self._objects(stored):
                digest = found["Key"][len(stored) :]
                if digest not in referenced:
                    self.client.delete_object(Bucket=self.bucket, Key=found["Key"])
                    removed.append(digest)
        return removed

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])


class S3Upload:
    """An upload streamed to a temporary key in parts, hashed on the way."""

    def __init__(self, store: S3Store, key: str) -> None:
        self._store = store
        self.name = key
        self.size = 0
        self._digest = hashlib.sha256()
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._complete = False

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self.size += len(data)
        self._buffer += data
        if len(self._buffer) >= PART_SIZE:
            self._send_parts(final=False)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        # werkzeug rewinds a part when it ends; what was written is read with read_back().
        return 0

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        """Nothing to close: keep() or discard() ends the upload."""

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def read_back(self, limit: int) -> bytes:
        if self._upload_id is None and not self._complete:
            return bytes(self._buffer[:limit])  # a small part: still all in memory
        self.finish()
        with self._store.calls(f"reading back {self.name}"):
            answer = self._store.client.get_object(
                Bucket=self._store.bucket, Key=self.name, Range=f"bytes=0-{limit - 1}"
            )
            return bytes(answer["Body"].read())

    def _send_parts(self, *, final: bool) -> None:
        client, bucket = self._store.client, self._store.bucket
        with self._store.calls(f"uploading {self.name}"):
            if self._upload_id is None:
                started = client.create_multipart_upload(Bucket=bucket, Key=self.name)
                self._upload_id = started["UploadId"]
            while len(self._buffer) >= PART_SIZE or (final and self._buffer):
                number = len(self._parts) + 1
                answer = client.upload_part(
                    Bucket=bucket,
                    Key=self.name,
                    UploadId=self._upload_id,
                    PartNumber=number,
                    Body=bytes(self._buffer[:PART_SIZE]),
                )
                del self._buffer[:PART_SIZE]
                self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def finish(self) -> None:
        """Make the temporary object whole: one PUT for a small upload, else the last part."""
        if self._complete:
            return
        client, bucket = self._store.client, self._store.bucket
        if self._upload_id is None:
            with self._store.calls(f"uploading {self.name}"):
                client.put_object(Bucket=bucket, Key=self.name, Body=bytes(self._buffer))
        else:
            self._send_parts(final=True)
            with self._store.calls(f"completing {self.name}"):
                client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self.name,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        self._buffer.clear()
        self._complete = True

    def abort(self) -> None:
        """Leave nothing: abort the multipart upload, or delete the temporary object."""
        self._buffer.clear()
        client, bucket = self._store.client, self._store.bucket
        with self._store.calls(f"aborting {self.name}"):
            if self._complete:
                client.delete_object(Bucket=bucket, Key=self.name)
            elif self._upload_id is not None:
                client.abort_multipart_upload(
                    Bucket=bucket, Key=self.name, UploadId=self._upload_id
                )
                self._upload_id = None


class S3Reader(io.RawIOBase):
    """An object read on demand with ranged GETs: seeking to byte N reads from N on."""

    def __init__(self, store: S3Store, key: str, size: int) -> None:
        self._store = store
        self.name = key
        self.size = size
        self._position = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        position = max(0, base + offset)
        if position != self._position:
            self._close_body()
            self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        if self._position >= self.size:
            return 0
        with self._store.calls(f"reading {self.name}"):
            if self._body is None:
                answer = self._store.client.get_object(
                    Bucket=self._store.bucket, Key=self.name, Range=f"bytes={self._position}-"
                )
                self._body = answer["Body"]
            data = self._body.read(len(buffer))
        if not data:
            raise ArtifactStoreUnavailable(
                f"{self.name} ended at byte {self._position} of {self.size}"
            )
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._close_body()
        super().close()


def _started(key: str, reported: Any) -> float:
    """Return when an upload started: the time in its name, else the date the server reports."""
    name = key.rsplit("/", 1)[-1]
    stamp = name.split("-")[1] if name.startswith("upload-") and name.count("-") >= 2 else ""
    return float(stamp) if stamp.isdigit() else float(reported.timestamp())


def _error_code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _client_error(error: Any, bucket: str) -> str:
    code = _error_code(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket" or (
        code in ("404", "NotFound") and getattr(error, "operation_name", "") == "HeadBucket"
    ):
        return f"bucket {bucket!r} does not exist; create it first"
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return (
            f"access denied ({code}); check the credentials boto3 finds (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role) and the bucket's policy"
        )
    message = error.response.get("Error", {}).get("Message") or str(error)
    return f"{code or status}: {message}"


def _botocore_error(error: Exception) -> str:
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    if isinstance(error, EndpointConnectionError | ConnectTimeoutError):
        return f"cannot reach the endpoint: {error}"
    if isinstance(error, NoCredentialsError):
        return (
            "no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
            "AWS_PROFILE, or run with an instance role"
        )
    if isinstance(error, NoRegionError):
        return "no region; set artifact_store_region or AWS_DEFAULT_REGION"
    return f"{type(error).__name__}: {error}"
