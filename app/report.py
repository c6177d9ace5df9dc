"""A run rendered for people and machines: JSON, JUnit XML and a plain-text table.

Results are redacted when they are made (runner), so every renderer here can print what it is given.
"""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from app import __version__
from app.checks.base import Status
from app.results import Result, Run

_MARK = {Status.PASSED: "PASS", Status.WARNING: "WARN", Status.FAILED: "FAIL"}


def to_json(run: Run) -> str:
    document = {"version": __version__, **run.model_dump(mode="json")}
    return json.dumps(document, indent=2, ensure_ascii=False)


def to_junit(run: Run) -> str:
    """JUnit XML: one testsuite, one testcase per target; failed → <failure>, warning → <system-out>."""
    failed = sum(r.status == Status.FAILED for r in run.results)
    suite = ET.Element(
        "testsuite",
        name="airia-test-pod",
        tests=str(len(run.results)),
        failures=str(failed),
        errors="0",
        skipped="0",
        time=f"{(run.duration_ms or 0) / 1000:.3f}",
        timestamp=run.started_at.isoformat(timespec="seconds"),
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="verdict", value=str(run.verdict or "running"))
    ET.SubElement(properties, "property", name="version", value=__version__)
    for result in run.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"airia-test-pod.{result.kind}",
            name=result.name,
            time=f"{result.duration_ms / 1000:.3f}",
        )
        if result.status == Status.FAILED:
            failure = ET.SubElement(case, "failure", message=result.cause, type=str(result.stage))
            failure.text = _details(result)
        elif result.status == Status.WARNING:
            ET.SubElement(case, "system-out").text = "WARNING: " + _details(result)
    root = ET.Element("testsuites", name="airia-test-pod", tests=suite.get("tests", "0"), failures=str(failed))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def to_text(run: Run) -> str:
    """The terminal table: one line per target, then the cause and remediation of each one that is not clean."""
    width = max([len(r.name) for r in run.results] + [6])
    lines = [f"{'STATUS':6}  {'TARGET':{width}}  {'KIND':10}  {'STAGE':10}  {'TIME':>8}  CAUSE"]
    for r in run.results:
        optional = "" if r.required else " (optional)"
        lines.append(
            f"{_MARK[r.status]:6}  {r.name:{width}}  {r.kind:10}  {r.stage or '-'!s:10}  "
            f"{r.duration_ms / 1000:7.2f}s  {r.cause}{optional}"
        )
    for r in run.results:
        if r.status != Status.PASSED:
            lines += ["", f"{r.name}: {r.cause}", f"  fix: {r.remediation}"]
    counts = run.counts
    verdict = "READY" if run.verdict == "ready" else "NOT READY"
    lines += [
        "",
        f"{verdict}: {counts.passed} passed, {counts.warning} warning, {counts.failed} failed"
        f" of {counts.total} in {(run.duration_ms or 0) / 1000:.2f}s",
    ]
    return "\n".join(lines) + "\n"


def _details(result: Result) -> str:
    steps = "\n".join(f"  {s.status.upper():7} {s.name} ({s.duration_ms:.0f} ms) {s.detail}" for s in result.steps)
    return f"stage: {result.stage}\ncause: {result.cause}\nremediation: {result.remediation}\nsteps:\n{steps}\n"
