"""The region's object store: a directory per region in the embedded stack (an S3 bucket in production).

Keys are `<tenant_id>/<name>`; the store of one region never resolves a key outside its own root, so
a recording cannot be written to, or read from, another region's store by a crafted key.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from regions.catalogue import get_region

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def private_dirs(path: Path) -> None:
    """`path` and every missing parent created 0700 (mkdir's `mode` covers only the last one)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


class ObjectKeyError(ValueError):
    """A key that is not `<tenant uuid>/<plain file name>`."""


class RegionStore:
    def __init__(self, root: Path | str, region: str) -> None:
        self.region = get_region(region)
        self.root = Path(root) / self.region.bucket

    @staticmethod
    def key(tenant_id: uuid.UUID | str, name: str) -> str:
        tenant = str(uuid.UUID(str(tenant_id)))
        if not _NAME.fullmatch(name) or ".." in name:
            raise ObjectKeyError(f"bad object name {name!r}")
        return f"{tenant}/{name}"

    def path(self, key: str) -> Path:
        tenant, _, name = key.partition("/")
        try:
            checked = self.key(tenant, name)
        except ValueError as exc:
            raise ObjectKeyError(f"bad object key {key!r}") from exc
        return self.root / checked

    def put(self, key: str, data: bytes) -> int:
        """Write atomically (temp file + rename) so a reader never sees half a recording. Objects are
        callers' data: folders 0700 and files 0600, whatever the process's umask."""
        path = self.path(key)
        private_dirs(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return len(data)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def keys(self) -> list[str]:
        """Every object key in this region's store (for the residency audit)."""
        if not self.root.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in self.root.glob("*/*") if p.is_file()
                      and not p.name.startswith("."))
