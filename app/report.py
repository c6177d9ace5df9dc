"""A run rendered for people and machines: JSON, JUnit XML, a plain-text table and a self-contained HTML page.

Results are redacted when they are made (runner), so every renderer here can print what it is given.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from app import __version__
from app.checks.base import Status
from app.results import Result, Run

if TYPE_CHECKING:
    from jinja2 import Template

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


def to_html(run: Run) -> str:
    """A self-contained page (styles inline, no script, no external resource) to attach to a support ticket.

    Every value is escaped by the template engine: target descriptions and remote error text are untrusted.
    """
    return _html_template().render(run=run, version=__version__, generated=datetime.now().astimezone())


@functools.cache
def _html_template() -> Template:
    from jinja2 import Environment

    return Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(_HTML)


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>airia-test-pod report: {{ (run.verdict or "in progress") | replace("_", " ") }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 72rem; padding: 0 1rem; }
body { color: #1d232b; } h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin: 0; }
.verdict { padding: .8rem 1rem; border-radius: 6px; font-weight: 600; }
.ready { background: #e3f4e8; } .not_ready { background: #fbe4e4; } .running { background: #fff4d6; }
section { border: 1px solid #d5dae0; border-radius: 6px; padding: .8rem 1rem; margin: 1rem 0; }
.status { font-weight: 700; text-transform: uppercase; }
.passed .status { color: #17692f; } .warning .status { color: #8a5a00; } .failed .status { color: #a61b1b; }
table { border-collapse: collapse; width: 100%; margin-top: .5rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #e6e9ed; vertical-align: top; }
td, dd { overflow-wrap: anywhere; } dt { font-weight: 600; } dd { margin: 0 0 .4rem 0; }
</style>
</head>
<body>
<h1>airia-test-pod {{ version }}: infrastructure readiness report</h1>
<p>Run started {{ run.started_at.isoformat(timespec="seconds") }}
{% if run.finished_at %}
, finished {{ run.finished_at.isoformat(timespec="seconds") }} ({{ "%.2f" | format(run.duration_ms / 1000) }} s)
{% endif %}
. Report generated {{ generated.isoformat(timespec="seconds") }}.
{% if run.strict %} Strict mode: warnings count as failures.{% endif %}
</p>
{% set c = run.counts %}
<p class="verdict {{ run.verdict or 'running' }}">
{% if run.verdict == "ready" %}READY{% elif run.verdict == "not_ready" %}NOT READY{% else %}RUN IN PROGRESS{% endif %}:
{{ c.passed }} passed, {{ c.warning }} warning, {{ c.failed }} failed
{% if c.pending %}, {{ c.pending }} still running{% endif %}
 of {{ c.total }} targets.</p>
{% if run.pending %}<p>Still running: {{ run.pending | join(", ") }}</p>{% endif %}
<table>
<tr><th>Status</th><th>Target</th><th>Kind</th><th>Stage</th><th>Time</th><th>Cause</th></tr>
{% for r in run.results %}
<tr class="{{ r.status }}"><td class="status">{{ r.status }}</td>
<td>{{ r.name }}{% if not r.required %} (optional){% endif %}</td><td>{{ r.kind }}</td><td>{{ r.stage or "" }}</td>
<td>{{ "%.2f" | format(r.duration_ms / 1000) }} s</td><td>{{ r.cause }}</td></tr>
{% endfor %}
</table>
{% for r in run.results %}
<section class="{{ r.status }}">
<h2><span class="status">{{ r.status }}</span> {{ r.name }}
<small>({{ r.kind }}{% if not r.required %}, optional{% endif %})</small></h2>
{% if r.description %}<p>{{ r.description }}</p>{% endif %}
<dl>
{% if r.stage %}<dt>Stage</dt><dd>{{ r.stage }}</dd>{% endif %}
{% if r.cause %}<dt>Cause</dt><dd>{{ r.cause }}</dd>{% endif %}
{% if r.remediation %}<dt>Remediation</dt><dd>{{ r.remediation }}</dd>{% endif %}
<dt>Started</dt>
<dd>{{ r.started_at.isoformat(timespec="seconds") }}, took {{ "%.2f" | format(r.duration_ms / 1000) }} s</dd>
</dl>
{% if r.steps %}
<table><tr><th>Step</th><th>Stage</th><th>Status</th><th>Time</th><th>Detail</th></tr>
{% for s in r.steps %}
<tr><td>{{ s.name }}</td><td>{{ s.stage }}</td><td>{{ s.status }}</td>
<td>{{ "%.0f" | format(s.duration_ms) }} ms</td><td>{{ s.detail }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% if r.facts %}
<table><tr><th>Fact</th><th>Value</th></tr>
{% for key, value in r.facts.items() %}
<tr><td>{{ key }}</td><td>{{ value }}</td></tr>
{% endfor %}
</table>
{% endif %}
</section>
{% endfor %}
</body>
</html>
"""


@dataclass(frozen=True)
class Renderer:
    render: Callable[[Run], str]
    media_type: str
    extension: str  # of a downloaded report file


# every format a run can be rendered in; the CLI and the API each offer their part of it
RENDERERS: dict[str, Renderer] = {
    "text": Renderer(to_text, "text/plain; charset=utf-8", "txt"),
    "json": Renderer(to_json, "application/json", "json"),
    "junit": Renderer(to_junit, "application/xml", "xml"),
    "html": Renderer(to_html, "text/html; charset=utf-8", "html"),
}
