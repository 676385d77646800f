"""Where local recordings live, for the media node that writes them and the API that serves them.

``PARLEY_RECORDING_STORE`` is empty (``data_dir/recordings``), an absolute path, ``file://PATH``,
or ``s3://bucket/prefix`` (not local).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse


def local_root(location: str, data_dir: Path, folder: str = "recordings") -> Path | None:
    """The folder recordings (or, with ``folder``, another kind of file stored the same way:
    call exports) are written to, or None when they go to S3."""
    if not location:
        return data_dir / folder
    parsed = urlparse(location)
    if parsed.scheme == "s3":
        return None
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(location)


def local_file(stored: str, root: Path | None) -> Path | None:
    """The file a stored ``file://`` location names, if it lies inside ``root``; else None (a
    location from elsewhere is never served)."""
    parsed = urlparse(stored)
    if parsed.scheme != "file" or root is None:
        return None
    path = Path(unquote(parsed.path)).resolve()
    return path if path.is_relative_to(root.resolve()) else None


def delete_recording(stored: str, root: Path | None) -> bool:
    """Remove a stored recording: a ``file://`` one inside ``root``, or an ``s3://`` object (with
    the process's AWS credentials). True if something was removed; a recording already gone, or
    a location from elsewhere, is not an error (deleting is idempotent)."""
    if stored.startswith("s3://"):
        bucket, _, key = stored.removeprefix("s3://").partition("/")
        if not bucket or not key:
            return False
        s3_client().delete_object(Bucket=bucket, Key=key)
        return True
    path = local_file(stored, root)
    if path is None or not path.is_file():
        return False
    path.unlink(missing_ok=True)
    return True


def s3_client() -> Any:
    import os

    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", region_name=region)
