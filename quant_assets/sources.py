"""Where vendor flat files come from: a local folder (the default) or an S3 endpoint, behind one interface.

Both mirror the vendor's key layout (`<prefix>/<dataset>/<YYYY>/<MM>/<YYYY-MM-DD>.csv.gz`). A source lists keys,
heads one (ETag and size) and streams one to a local file; `raw.land` builds on these three.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import dagster as dg
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, PrivateAttr, field_validator
from s3transfer.exceptions import RetriesExceededError as S3TransferError
from s3transfer.exceptions import S3DownloadFailedError

from quant_assets.flatfiles import AccessDenied, ObjectInfo, ObjectMissing, SourceError
from quant_assets.settings import (
    ACCESS_KEY_ENV,
    DEFAULT_BUCKET,
    DEFAULT_ENDPOINT,
    DEFAULT_VENDOR_DIR,
    SECRET_KEY_ENV,
    check_endpoint,
)


class FlatFileSource(dg.ConfigurableResource, ABC):
    """A place that holds vendor flat files under the vendor's key layout."""

    @abstractmethod
    def describe(self) -> str:
        """Where the files come from, for provenance (never includes credentials)."""

    @abstractmethod
    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """ETag and size of `key`; raises ObjectMissing or AccessDenied."""

    @abstractmethod
    def download(self, info: ObjectInfo, dest: Path) -> None:
        """Stream the object `info` describes to `dest` (a new file); raises ObjectMissing or AccessDenied."""


class LocalFlatFiles(FlatFileSource):
    """Flat files in a local folder that mirrors the vendor's key layout (what `quant-assets sample` writes).

    Only regular files inside the folder are served: a symbolic link (to `/etc/passwd`, or to a valid file
    elsewhere) and a key that climbs out of the folder are refused. The ETag is the MD5 of the content, as S3 gives
    for a single-part upload, so a `touch` or a copy of the folder is not mistaken for a vendor replacement.
    """

    root: str = Field(default=DEFAULT_VENDOR_DIR, description="Folder holding <prefix>/<dataset>/YYYY/MM/*.csv.gz.")

    def describe(self) -> str:
        return f"local:{Path(self.root).resolve()}"

    def _path(self, key: str) -> Path:
        """The file of `key`, after checking that no part of it is a link and that it stays inside the root."""
        root = Path(self.root).resolve()
        parts = PurePosixPath(key).parts
        if not parts or PurePosixPath(key).is_absolute() or ".." in parts:
            raise SourceError(key, f"{key!r} is not a key inside the local source {root}")
        current = root
        for part in parts:
            current = current / part
            if current.is_symlink():
                raise SourceError(
                    key,
                    f"{current} is a symbolic link: the local source serves only regular files "
                    f"inside {root}, and never follows links",
                )
        return current

    def _info(self, path: Path, key: str) -> ObjectInfo:
        stat = path.stat()
        return ObjectInfo(
            key=key, etag=_content_etag(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino), size=stat.st_size
        )

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        root = Path(self.root).resolve()
        base = root / prefix if prefix.endswith("/") else (root / prefix).parent
        if not base.is_dir() or base.is_symlink():
            return []
        found = []
        for folder, _, names in os.walk(base, followlinks=False):
            for name in names:
                path = Path(folder) / name
                key = path.relative_to(root).as_posix()
                if key.startswith(prefix) and not name.startswith(".") and not path.is_symlink() and path.is_file():
                    found.append(self._info(path, key))
        return sorted(found, key=lambda info: info.key)

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        if not path.is_file():
            raise ObjectMissing(key, f"no file {path}")
        if not os.access(path, os.R_OK):
            raise AccessDenied(key, f"no permission to read {path}")
        return self._info(path, key)

    def download(self, info: ObjectInfo, dest: Path) -> None:
        path = self._path(info.key)
        try:
            # O_NOFOLLOW: a link swapped in after the check is refused too.
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as source, open(dest, "wb") as target:
                shutil.copyfileobj(source, target, 4 * 2**20)
        except FileNotFoundError:
            raise ObjectMissing(info.key, f"no file {path}") from None
        except PermissionError:
            raise AccessDenied(info.key, f"no permission to read {path}") from None
        except OSError as exc:  # ELOOP: the file became a link
            raise SourceError(info.key, f"cannot read {path}: {exc}") from None


@functools.lru_cache(maxsize=65536)  # every file of a long history: the new-file sensor lists them all
def _content_etag(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """The quoted MD5 of a file's content, cached while its size, mtime and inode stay the same."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(4 * 2**20):
            digest.update(chunk)
    return f'"{digest.hexdigest()}"'


def _cause(error: BaseException) -> str:
    """What went wrong, in words, from what boto3 and s3transfer raise (they wrap the real cause)."""
    text = f"{type(error).__name__}: {error}"
    if "PreconditionFailed" in text or "(412)" in text:
        return "the ETag changed during the download (the vendor replaced the file); run the session again"
    if "SlowDown" in text:
        return f"throttled by the endpoint (503 SlowDown): {text}"
    if any(s in text for s in ("IncompleteRead", "ResponseStreamingError", "Connection broken", "Connection reset")):
        return f"the body was cut off before its end: {text}"
    inner = getattr(error, "last_exception", None) or error.__cause__ or error.__context__
    if inner is not None and inner is not error:
        return _cause(inner)
    return text


class S3FlatFiles(FlatFileSource):
    """Flat files on an S3-compatible endpoint: Massive/Polygon's `files.massive.com` by default.

    Credentials come only from this resource's fields, which `definitions.py` fills from the dedicated variables
    `MASSIVE_S3_ACCESS_KEY_ID` and `MASSIVE_S3_SECRET_ACCESS_KEY` through `dagster.EnvVar`; the AWS default chain
    (`AWS_*` variables, `~/.aws`, instance roles) is never consulted, so a vendor key never reaches AWS or the
    reverse. Transient failures (5xx, `SlowDown`, connection resets, cut-off bodies) are retried with exponential
    backoff; a 403 is a permission fact and is raised at once.
    """

    endpoint_url: str = Field(default=DEFAULT_ENDPOINT, description="S3 endpoint, e.g. https://files.massive.com.")
    bucket: str = Field(default=DEFAULT_BUCKET, description="Bucket holding the flat files.")
    access_key_id: str = Field(description=f"Vendor S3 access key id; set from {ACCESS_KEY_ENV}.")
    secret_access_key: str = Field(description=f"Vendor S3 secret key; set from {SECRET_KEY_ENV}.")
    region_name: str = "us-east-1"
    max_attempts: int = Field(default=8, description="Attempts per request, retries with exponential backoff.")
    max_concurrency: int = Field(
        default=8, description="Parallel ranged GETs per file: the vendor throttles each connection, not the total."
    )
    multipart_chunksize_mb: int = 8

    _client: Any = PrivateAttr(default=None)
    # A validation error must not echo the value: an endpoint URL may carry a secret.
    model_config = {**FlatFileSource.model_config, "hide_input_in_errors": True}

    @field_validator("endpoint_url")
    @classmethod
    def _no_credentials_in_the_url(cls, value: str) -> str:
        check_endpoint(value)
        return value

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            yield name, ("***" if name in ("access_key_id", "secret_access_key") else value)

    def describe(self) -> str:
        return f"s3:{self.endpoint_url}/{self.bucket}"

    @property
    def client(self):
        if self._client is None:
            session = boto3.session.Session(
                aws_access_key_id=self.access_key_id,
                aws_secret_access_key=self.secret_access_key,
                region_name=self.region_name,
            )
            config = Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": self.max_attempts, "mode": "standard"},
                # The vendor endpoint sends no checksums; boto3 >= 1.36 would otherwise demand them.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=10,
                read_timeout=60,
            )
            self._client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    @contextmanager
    def _errors(self, key: str):
        """Turn what boto3 raises (after its retries) into this module's errors, naming the object."""
        where = f"s3://{self.bucket}/{key} at {self.endpoint_url}"
        try:
            yield
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(error.response.get("Error", {}).get("Code", ""))
            if status == 403 or code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise AccessDenied(key, f"403 Forbidden for {where}: the credentials or plan do not cover it") from None
            if code == "NoSuchBucket":
                raise SourceError(key, f"the bucket {self.bucket!r} does not exist at {self.endpoint_url}") from None
            if status == 404 or code in ("404", "NoSuchKey", "NotFound"):
                raise ObjectMissing(key, f"no object {where}") from None
            if status == 503 or code in ("SlowDown", "503"):
                raise SourceError(
                    key, f"throttled by the endpoint (HTTP 503 {code}) for {where} after {self.max_attempts} attempts"
                ) from None
            if code in ("PreconditionFailed", "412") or status == 412:
                raise SourceError(key, f"{_cause(error)} ({where})") from None
            raise SourceError(
                key, f"{code or status} for {where} after {self.max_attempts} attempts: {error}"
            ) from None
        except BotoCoreError as error:  # connection failures, timeouts, cut-off bodies after every retry
            raise SourceError(key, f"{_cause(error)} for {where} after {self.max_attempts} attempts") from None
        except (
            Boto3Error,
            S3TransferError,
            S3DownloadFailedError,
        ) as error:  # s3transfer's own: retries of a ranged GET used up, etc.
            raise SourceError(key, f"{_cause(error)} for {where} after {self.max_attempts} attempts") from None

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        found = []
        with self._errors(prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    found.append(ObjectInfo(key=obj["Key"], etag=obj["ETag"], size=int(obj["Size"])))
        return sorted(found, key=lambda info: info.key)

    def head(self, key: str) -> ObjectInfo:
        with self._errors(key):
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        return ObjectInfo(key=key, etag=response["ETag"], size=int(response["ContentLength"]))

    def download(self, info: ObjectInfo, dest: Path) -> None:
        # s3transfer splits large objects into ranged GETs that all ask for the ETag of its own HEAD (If-Match),
        # retries cut-off bodies and connection resets, and streams to disk, so memory stays flat whatever the
        # file size. `raw.land` checks afterwards that the ETag is still the one it recorded.
        transfer = TransferConfig(
            max_concurrency=self.max_concurrency,
            multipart_threshold=self.multipart_chunksize_mb * 2**20,
            multipart_chunksize=self.multipart_chunksize_mb * 2**20,
            num_download_attempts=self.max_attempts,
        )
        with self._errors(info.key):
            self.client.download_file(self.bucket, info.key, str(dest), Config=transfer)
