"""Target secrets mounted as files: one file per `${VARIABLE}` of the targets file, in TESTPOD_TARGET_SECRETS_DIR.

Kubernetes updates Secret volumes in place, so resolving the targets file against these files at every run makes
a rotated credential visible to the next run without a restart; environment variables are fixed when the
container starts and would keep reporting on credentials the platform no longer has.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DIRECTORY_VARIABLE = "TESTPOD_TARGET_SECRETS_DIR"
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # also skips the kubelet's `..data` bookkeeping entries


def environ(directory: str | Path | None = None) -> dict[str, str]:
    """The process environment with every secret file on top (a file wins over a variable of the same name)."""
    merged = dict(os.environ)
    where = directory or os.environ.get(DIRECTORY_VARIABLE)
    if not where or not Path(where).is_dir():
        return merged
    for file in Path(where).iterdir():
        if _VARIABLE_NAME.fullmatch(file.name) and file.is_file():
            merged[file.name] = file.read_text(encoding="utf-8")
    return merged
