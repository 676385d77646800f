"""Where an export job's file goes: a folder on this machine (the embedded mode, a worker with a
disk) or S3 (deployed: the Lambda's answer cannot carry more than 6 MB). ``PARLEY_EXPORT_STORE``
is read the way ``PARLEY_RECORDING_STORE`` is (shared/recordings.py).

Both writers take the file in chunks as the rows are read, so memory stays flat: S3 through a
multipart upload (parts of :data:`PART_BYTES`; one small object is a single PUT), a local file
written beside its final name and renamed once complete, so a half-written file is never served.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from shared.recordings import local_root, s3_client

PART_BYTES = 8 * 1024 * 1024  # S3 parts are at least 5 MiB, except the last


class ExportWriter(Protocol):
    async def write(self, chunk: bytes) -> None: ...

    async def close(self) -> str:
        """Finish the file; returns its stored location (``s3://`` or ``file://``)."""
        ...

    async def abort(self) -> None: ...


def export_root(store: str, data_dir: Path) -> Path | None:
    """The folder export files are written to, or None when they go to S3."""
    return local_root(store, data_dir, folder="exports")


class LocalWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.file = self.partial.open("wb")

    async def write(self, chunk: bytes) -> None:
        self.file.write(chunk)

    async def close(self) -> str:
        self.file.close()
        self.partial.replace(self.path)
        return "file://" + quote(str(self.path.resolve()))

    async def abort(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)


class S3Writer:
    def __init__(self, bucket: str, key: str, content_type: str) -> None:
        self.bucket, self.key, self.content_type = bucket, key, content_type
        self.client: Any = s3_client()
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    async def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        if len(self.buffer) >= PART_BYTES:
            await self._part()

    async def _part(self) -> None:
        if self.upload_id is None:
            started = await asyncio.to_thread(
                self.client.create_multipart_upload,
                Bucket=self.bucket,
                Key=self.key,
                ContentType=self.content_type,
            )
            self.upload_id = str(started["UploadId"])
        number = len(self.parts) + 1
        body, self.buffer = bytes(self.buffer), bytearray()
        answer = await asyncio.to_thread(
            self.client.upload_part,
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def close(self) -> str:
        if self.upload_id is None:
            await asyncio.to_thread(
                self.client.put_object,
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self.buffer),
                ContentType=self.content_type,
            )
        else:
            if self.buffer:
                await self._part()
            await asyncio.to_thread(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        return f"s3://{self.bucket}/{self.key}"

    async def abort(self) -> None:
        if self.upload_id is not None:
            await asyncio.to_thread(
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
            )


def open_writer(store: str, data_dir: Path, name: str, content_type: str) -> ExportWriter:
    """A writer for the file ``name`` (``tenant/export_id.csv``) in ``store``."""
    root = export_root(store, data_dir)
    if root is not None:
        return LocalWriter(root / name)
    bucket, _, prefix = store.removeprefix("s3://").partition("/")
    key = f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name
    return S3Writer(bucket, key, content_type)
