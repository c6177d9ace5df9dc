"""Security gate over the scanners' JSON reports: fail on fixable HIGH or CRITICAL findings.

Reads Trivy reports (filesystem, config, image: vulnerabilities, misconfigurations, secrets), pip-audit and
bandit. A finding blocks when it is HIGH or CRITICAL and fixable (a fixed version exists; misconfigurations,
secrets and code issues are always fixable). pip-audit reports no severity, so each of its fixable findings
counts as HIGH. Exceptions live in one reviewed file, each with a reason and an expiry date; an entry without
them, or past its expiry, fails the gate by itself.

    python .github/scripts/security_gate.py --exceptions .github/security-exceptions.yaml \
        --trivy trivy-fs.json --trivy trivy-image.json --pip-audit pip-audit.json --bandit bandit.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from actions_io import write_summary

BLOCKING_SEVERITIES = frozenset({"HIGH", "CRITICAL"})


class ReportError(Exception):
    """A report or the exceptions file cannot be read; the message names it."""


@dataclass(frozen=True)
class Finding:
    source: str
    id: str
    package: str
    severity: str
    fixable: bool
    detail: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Waiver:
    id: str
    reason: str
    expires: date
    package: str | None = None

    def covers(self, finding: Finding) -> bool:
        return self.id in (finding.id, *finding.aliases) and self.package in (None, finding.package)


def trivy_findings(report: dict[str, Any], source: str) -> list[Finding]:
    findings = []
    for result in report.get("Results") or []:
        target = str(result.get("Target", ""))
        for vuln in result.get("Vulnerabilities") or []:
            fixed = str(vuln.get("FixedVersion") or "")
            findings.append(
                Finding(
                    source,
                    str(vuln["VulnerabilityID"]),
                    str(vuln.get("PkgName", "")),
                    str(vuln.get("Severity", "UNKNOWN")).upper(),
                    bool(fixed),
                    f"{vuln.get('InstalledVersion', '?')} → {fixed or 'no fix yet'} in {target}",
                )
            )
        for misconfig in result.get("Misconfigurations") or []:
            if misconfig.get("Status", "FAIL") != "FAIL":
                continue
            findings.append(
                Finding(
                    source,
                    str(misconfig.get("AVDID") or misconfig["ID"]),
                    target,
                    str(misconfig.get("Severity", "UNKNOWN")).upper(),
                    True,
                    str(misconfig.get("Title", "")),
                    (str(misconfig.get("ID", "")),),
                )
            )
        for secret in result.get("Secrets") or []:
            findings.append(
                Finding(source, str(secret["RuleID"]), target, str(secret.get("Severity", "HIGH")).upper(), True)
            )
    return findings


def pip_audit_findings(report: dict[str, Any]) -> list[Finding]:
    return [
        Finding(
            "pip-audit",
            str(vuln["id"]),
            str(dependency["name"]),
            "HIGH",
            bool(vuln.get("fix_versions")),
            f"{dependency.get('version', '?')} → {', '.join(vuln.get('fix_versions') or []) or 'no fix yet'}",
            tuple(str(alias) for alias in vuln.get("aliases") or []),
        )
        for dependency in report.get("dependencies") or []
        for vuln in dependency.get("vulns") or []
    ]


def bandit_findings(report: dict[str, Any]) -> list[Finding]:
    return [
        Finding(
            "bandit",
            str(issue["test_id"]),
            f"{issue.get('filename', '?')}:{issue.get('line_number', '?')}",
            str(issue.get("issue_severity", "UNKNOWN")).upper(),
            True,
            str(issue.get("issue_text", "")),
        )
        for issue in report.get("results") or []
    ]


def load_waivers(data: Any, today: date) -> tuple[list[Waiver], list[str]]:
    """The valid, unexpired waivers, and a problem for every entry that is incomplete or expired."""
    entries = (data or {}).get("exceptions") if isinstance(data, dict | None) else None
    if not isinstance(entries, list):
        return [], ["the exceptions file needs a top-level `exceptions:` list"]
    waivers, problems = [], []
    for number, entry in enumerate(entries):
        where = f"exceptions[{number}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping with id, reason and expires")
            continue
        missing = [key for key in ("id", "reason", "expires") if not entry.get(key)]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
            continue
        expires = entry["expires"]
        if not isinstance(expires, date):
            try:
                expires = date.fromisoformat(str(expires))
            except ValueError:
                problems.append(f"{where} ({entry['id']}): expires {expires!r} is not a YYYY-MM-DD date")
                continue
        if expires < today:
            problems.append(f"{where} ({entry['id']}): expired on {expires.isoformat()}; fix it or review again")
            continue
        package = entry.get("package")
        waivers.append(Waiver(str(entry["id"]), str(entry["reason"]), expires, str(package) if package else None))
    return waivers, problems


def blocking(findings: Iterable[Finding], waivers: Sequence[Waiver]) -> tuple[list[Finding], list[Finding]]:
    """(blocking, waived): fixable HIGH/CRITICAL findings, split by whether a waiver covers them."""
    serious = [f for f in findings if f.fixable and f.severity in BLOCKING_SEVERITIES]
    waived = [f for f in serious if any(w.covers(f) for w in waivers)]
    return [f for f in serious if f not in waived], waived


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(f"{path}: cannot read the report ({error})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return data


def markdown(blocked: Sequence[Finding], waived: Sequence[Finding], problems: Sequence[str]) -> str:
    verdict = "failed" if blocked or problems else "passed"
    lines = [f"### Security gate {verdict}: {len(blocked)} blocking, {len(waived)} waived"]
    if problems:
        lines += ["", *(f"- exceptions file: {problem}" for problem in problems)]
    if blocked or waived:
        lines += ["", "| | source | id | package / file | severity | detail |", "| --- | --- | --- | --- | --- | --- |"]
        for mark, group in (("blocking", blocked), ("waived", waived)):
            lines += [f"| {mark} | {f.source} | {f.id} | {f.package} | {f.severity} | {f.detail} |" for f in group]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="security_gate.py", description=__doc__.split("\n")[0])
    parser.add_argument("--exceptions", type=Path, required=True, help="the reviewed exceptions YAML")
    parser.add_argument("--trivy", type=Path, action="append", default=[], help="Trivy JSON report (repeatable)")
    parser.add_argument("--pip-audit", type=Path, help="pip-audit --format json report")
    parser.add_argument("--bandit", type=Path, help="bandit -f json report")
    parser.add_argument("--today", type=date.fromisoformat, help="date to judge expiry against (default: today)")
    args = parser.parse_args(argv)

    try:
        findings = [f for path in args.trivy for f in trivy_findings(_load_json(path), f"trivy {path.stem}")]
        if args.pip_audit:
            findings += pip_audit_findings(_load_json(args.pip_audit))
        if args.bandit:
            findings += bandit_findings(_load_json(args.bandit))
        try:
            exceptions = yaml.safe_load(args.exceptions.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ReportError(f"{args.exceptions}: cannot read ({error})") from None
    except (ReportError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not (args.trivy or args.pip_audit or args.bandit):
        print("error: no report given: a gate over nothing passes nothing", file=sys.stderr)
        return 2
    waivers, problems = load_waivers(exceptions, args.today or datetime.now(UTC).date())
    blocked, waived = blocking(findings, waivers)
    report = markdown(blocked, waived, problems)
    print(report, end="")
    write_summary(report)
    return 1 if blocked or problems else 0


if __name__ == "__main__":
    sys.exit(main())
