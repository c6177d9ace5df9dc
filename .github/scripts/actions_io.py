"""What a GitHub Actions step reads and writes: `gh api` answers in, step outputs and the job summary out.

Outside Actions (a developer's shell, the tests without the variables) outputs and summary are silently not written.
"""

from __future__ import annotations

import os
import uuid
from typing import Any


def api_items(data: Any, what: str) -> list[Any]:
    """The items of a list endpoint's answer: one JSON array, or `gh api --paginate --slurp`'s array of pages.

    Raises ValueError naming `what` when the answer is no array (e.g. an error object such as `{"message": ...}`).
    """
    if not isinstance(data, list):
        raise ValueError(f"the {what} file must hold a JSON array of {what}")
    pages = data if data and all(isinstance(item, list) for item in data) else [data]
    return [item for page in pages for item in page]


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
