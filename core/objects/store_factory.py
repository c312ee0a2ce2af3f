"""The store for one area, built from StoreConfig: the one module that knows both backends.

Apart from store_config.py, so that the settings (which core/config/ imports) import
neither backend, and s3.py may import the settings without a circle.
"""

from __future__ import annotations

from pathlib import Path

from core.config.recording_store import StoreConfig

from .storage import LocalStorage, Storage


def open_storage(config: StoreConfig, local_root: Path, area: str) -> Storage:
    """The store for one area ("recordings", "identity"): a folder under `local_root`, or the
    bucket's keys under `<prefix><area>/`."""
    if config.kind == "s3":
        from .s3 import S3Storage  # boto3 is imported only by nodes that use it

        return S3Storage(config, f"{config.prefix}{area}/")
    return LocalStorage(local_root)
