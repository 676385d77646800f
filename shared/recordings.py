"""Where local recordings live, for the media node that writes them and the API that serves them.

``PARLEY_RECORDING_STORE`` is empty (``data_dir/recordings``), an absolute path, ``file://PATH``,
or ``s3://bucket/prefix`` (not local).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse


def local_root(location: str, data_dir: Path) -> Path | None:
    """The folder recordings are written to, or None when they go to S3."""
    if not location:
        return data_dir / "recordings"
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
