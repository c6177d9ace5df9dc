"""The Actions I/O helpers: list answers of `gh api` (one array or slurped pages), step outputs and the summary."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from actions_io import api_items, write_outputs, write_summary


def test_api_items_reads_one_array_or_slurped_pages() -> None:
    assert api_items([{"id": 1}, {"id": 2}], "releases") == [{"id": 1}, {"id": 2}]
    assert api_items([[{"id": 1}], [], [{"id": 2}]], "releases") == [{"id": 1}, {"id": 2}]
    assert api_items([], "releases") == [] and api_items([[]], "releases") == []
    # a page of items that are not lists is one page, whatever the items are (the caller checks them)
    assert api_items([[1], "x"], "releases") == [[1], "x"]


def test_api_items_names_what_an_error_answer_should_have_been() -> None:
    with pytest.raises(ValueError, match="the package versions file must hold a JSON array of package versions"):
        api_items({"message": "Bad credentials"}, "package versions")


def test_outputs_and_summary_are_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output, summary = tmp_path / "output", tmp_path / "summary"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_outputs(service="staging-airia-test-pod", reason="line one\nline two")
    write_summary("### Title\n\n")
    write_summary("more")
    match = re.fullmatch(
        r"service=staging-airia-test-pod\nreason<<(EOF_\w+)\nline one\nline two\n\1\n", output.read_text()
    )
    assert match is not None
    assert summary.read_text() == "### Title\nmore\n"


def test_outside_actions_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.chdir(tmp_path)
    write_outputs(action="promote")
    write_summary("text")
    assert list(tmp_path.iterdir()) == []
