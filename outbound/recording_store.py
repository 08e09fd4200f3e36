"""Where recordings are kept (RECORDINGS_URL): a folder, or any S3-compatible store through boto3.

A recording arrives whole in a file of its own (the recordings job downloads it there and checks it first) and is
then put in the store in one step: renamed into the folder, so a half-written file is never seen there, or uploaded
to S3, where an object appears only once it is complete. Each store reads back a byte range, for the page's player.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

CHUNK = 64 * 1024
CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class StoreError(Exception):
    """The store could not keep or read a recording; the message says why, in one line."""


def file_name(recording_uuid: str, extension: str) -> str:
    """A recording's name in the store: its uuid, unless the webhook sent something that is not a plain name."""
    import hashlib

    stem = recording_uuid if _SAFE_NAME.fullmatch(recording_uuid) and ".." not in recording_uuid else None
    stem = stem or hashlib.sha256(recording_uuid.encode("utf-8", "replace")).hexdigest()
    return f"{stem}.{extension}"


def content_type_of(location: str) -> str:
    return CONTENT_TYPES.get(location.rpartition(".")[2].lower(), "application/octet-stream")


class FolderStore:
    """Recordings as files in one folder."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    @property
    def incoming(self) -> Path:
        """Where downloads are written before they are put: in the folder itself, so putting is a rename."""
        return self.folder / ".incoming"

    def put(self, name: str, source: Path, content_type: str) -> str:
        target = self.folder / name
        try:
            _fsync(source)
            os.replace(source, target)
            _fsync_folder(self.folder)
        except OSError as error:
            raise StoreError(f"cannot write {target}: {error.strerror or error}") from None
        return str(target)

    def size(self, location: str) -> int:
        try:
            return Path(location).stat().st_size
        except OSError as error:
            raise StoreError(f"cannot read {location}: {error.strerror or error}") from None

    def read(self, location: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes start..end (inclusive) of the recording."""
        try:
            handle = open(location, "rb")  # noqa: SIM115 - closed by the generator
        except OSError as error:
            raise StoreError(f"cannot read {location}: {error.strerror or error}") from None
        return _chunks(handle, start, end)

    def delete(self, location: str) -> None:
        try:
            Path(location).unlink(missing_ok=True)
        except OSError as error:
            raise StoreError(f"cannot remove {location}: {error.strerror or error}") from None

    def check(self) -> str | None:
        """Why the store cannot be written now, or None."""
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"RECORDINGS_URL: cannot make {self.folder} ({error.strerror or error})"
        return None


def _chunks(handle, start: int, end: int) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class S3Store:
    """Recordings as objects under one prefix of one bucket, on AWS or any S3-compatible endpoint. Credentials come
    from boto3's usual chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, an instance role)."""

    def __init__(self, url: str, endpoint: str | None, incoming: Path, timeout: float = 30):
        parts = urlsplit(url)
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self.incoming = incoming
        self.endpoint, self.timeout = endpoint, timeout
        self._client = None

    @property
    def client(self):
        """boto3's client, made when first used: boto3 is loaded only by the processes that reach the store."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            retries = {"max_attempts": 2, "mode": "standard"}
            config = Config(connect_timeout=5, read_timeout=self.timeout, retries=retries)
            self._client = boto3.client("s3", endpoint_url=self.endpoint, config=config)
        return self._client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _split(self, location: str) -> tuple[str, str]:
        parts = urlsplit(location)
        return parts.netloc, parts.path.lstrip("/")

    def put(self, name: str, source: Path, content_type: str) -> str:
        key = self._key(name)
        try:
            self.client.upload_file(str(source), self.bucket, key, ExtraArgs={"ContentType": content_type})
        except Exception as error:
            raise StoreError(f"cannot upload to s3://{self.bucket}/{key}: {_brief(error)}") from None
        source.unlink(missing_ok=True)
        return f"s3://{self.bucket}/{key}"

    def size(self, location: str) -> int:
        bucket, key = self._split(location)
        try:
            return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except Exception as error:
            raise StoreError(f"cannot read {location}: {_brief(error)}") from None

    def read(self, location: str, start: int, end: int) -> Iterator[bytes]:
        bucket, key = self._split(location)
        try:
            body = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"]
        except Exception as error:
            raise StoreError(f"cannot read {location}: {_brief(error)}") from None
        return body.iter_chunks(CHUNK)

    def delete(self, location: str) -> None:
        bucket, key = self._split(location)
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except Exception as error:
            raise StoreError(f"cannot remove {location}: {_brief(error)}") from None

    def check(self) -> str | None:
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"INSTANCE_PATH: cannot make {self.incoming} ({error.strerror or error})"
        return None


def _brief(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()


def open_store(location: str, endpoint: str | None, instance_path: str):
    """The store RECORDINGS_URL names (settings.recordings_location)."""
    if location.startswith("s3://"):
        return S3Store(location, endpoint, Path(instance_path) / "recordings-incoming")
    return FolderStore(location)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range an HTTP Range header asks for, as (first, last) inclusive, clipped to `size`; None for
    the whole file (no header, or one this does not serve: several ranges, another unit). ValueError when the
    range starts past the end (the answer is then 416)."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        count = int(last)
        if count == 0:
            raise ValueError("an empty suffix range")
        return max(0, size - count), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise ValueError(f"bytes {start}- is past the end ({size} bytes)")
    return start, end
