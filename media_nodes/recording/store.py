"""Where recordings are kept: a local folder by default, S3 in production."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from shared.recordings import local_root


class RecordingStore(Protocol):
    async def save(self, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key``; return its location (file:// or s3:// URL)."""
        ...


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def save(self, key: str, data: bytes, content_type: str) -> str:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"recording key escapes the store: {key!r}")
        await asyncio.to_thread(self._write, path, data)
        return path.as_uri()

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_bytes(data)
        partial.replace(path)


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client or boto3.client("s3")

    async def save(self, key: str, data: bytes, content_type: str) -> str:
        full = f"{self.prefix}/{key}" if self.prefix else key
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self.bucket,
            Key=full,
            Body=data,
            ContentType=content_type,
            ServerSideEncryption="AES256",
        )
        return f"s3://{self.bucket}/{full}"


def create_store(location: str, data_dir: Path) -> RecordingStore:
    """``''`` -> data_dir/recordings; ``/abs/path`` or ``file://...``; ``s3://bucket/prefix``."""
    root = local_root(location, data_dir)
    if root is not None:
        return LocalStore(root)
    parsed = urlparse(location)
    return S3Store(parsed.netloc, parsed.path)
