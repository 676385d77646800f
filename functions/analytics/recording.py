"""Links to call recordings: S3 objects get a short-lived pre-signed URL."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

PRESIGN_SECONDS = 900


@lru_cache(maxsize=1)
def _s3() -> Any:
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", region_name=region)


def recording_link(url: str | None) -> str | None:
    """``s3://bucket/key`` -> a pre-signed HTTPS URL; other locations are returned as stored."""
    if not url or not url.startswith("s3://"):
        return url
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not bucket or not key:
        return None
    link: str = _s3().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
    )
    return link
