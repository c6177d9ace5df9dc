"""The two files a GitHub Actions step hands results through: step outputs and the job summary.

Outside Actions (a developer's shell, the tests without the variables) both are silently not written.
"""

from __future__ import annotations

import os
import uuid


def write_outputs(**values: str) -> None:
    """Append `name=value` pairs to $GITHUB_OUTPUT (multi-line values use a random heredoc delimiter)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as output:
        for name, value in values.items():
            if "\n" in value:
                delimiter = f"EOF_{uuid.uuid4().hex}"
                output.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                output.write(f"{name}={value}\n")


def write_summary(markdown: str) -> None:
    """Append Markdown to the job summary ($GITHUB_STEP_SUMMARY)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as summary:
        summary.write(markdown.rstrip("\n") + "\n")
