"""Security gate: fixable HIGH/CRITICAL findings fail it; reviewed exceptions need a reason and an expiry date."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import security_gate
import yaml
from security_gate import Finding, Waiver, bandit_findings, blocking, load_waivers, pip_audit_findings, trivy_findings

from tests.pipeline.helpers import ROOT

TODAY = date(2026, 6, 1)
TRIVY_IMAGE: dict[str, Any] = {
    "SchemaVersion": 2,
    "Results": [
        {
            "Target": "ghcr.io/o/airia-test-pod@sha256:abc (debian 12.8)",
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-2026-0001",
                    "PkgName": "openssl",
                    "InstalledVersion": "3.0.15",
                    "FixedVersion": "3.0.16",
                    "Severity": "CRITICAL",
                },
                {
                    "VulnerabilityID": "CVE-2026-0002",
                    "PkgName": "zlib",
                    "InstalledVersion": "1.2.13",
                    "FixedVersion": "",
                    "Severity": "HIGH",
                },
                {
                    "VulnerabilityID": "CVE-2026-0003",
                    "PkgName": "libc6",
                    "InstalledVersion": "2.36",
                    "FixedVersion": "2.36-9",
                    "Severity": "MEDIUM",
                },
            ],
        },
        {"Target": "Python", "Vulnerabilities": None},
    ],
}
TRIVY_CONFIG: dict[str, Any] = {
    "Results": [
        {
            "Target": "Dockerfile",
            "Misconfigurations": [
                {
                    "ID": "DS002",
                    "AVDID": "AVD-DS-0002",
                    "Title": "Image user should not be 'root'",
                    "Severity": "HIGH",
                    "Status": "FAIL",
                },
                {"ID": "DS026", "AVDID": "AVD-DS-0026", "Title": "No HEALTHCHECK", "Severity": "LOW", "Status": "FAIL"},
                {"ID": "DS001", "AVDID": "AVD-DS-0001", "Severity": "HIGH", "Status": "PASS"},
            ],
            "Secrets": [{"RuleID": "github-pat", "Severity": "CRITICAL", "Title": "GitHub token"}],
        }
    ]
}
PIP_AUDIT: dict[str, Any] = {
    "dependencies": [
        {
            "name": "jinja2",
            "version": "3.1.4",
            "vulns": [{"id": "GHSA-q2x7-8rv6-6q7h", "fix_versions": ["3.1.5"], "aliases": ["CVE-2024-56326"]}],
        },
        {"name": "somepkg", "version": "1.0", "vulns": [{"id": "PYSEC-2026-1", "fix_versions": [], "aliases": []}]},
        {"name": "httpx", "version": "0.28.1", "vulns": []},
        {"name": "local-pkg", "skip_reason": "not on PyPI"},
    ],
    "fixes": [],
}
BANDIT: dict[str, Any] = {
    "results": [
        {
            "test_id": "B602",
            "issue_severity": "HIGH",
            "filename": "app/x.py",
            "line_number": 3,
            "issue_text": "subprocess call with shell=True",
        },
        {"test_id": "B101", "issue_severity": "LOW", "filename": "app/y.py", "line_number": 9, "issue_text": "assert"},
    ]
}


def test_trivy_vulnerabilities_misconfigurations_and_secrets() -> None:
    findings = trivy_findings(TRIVY_IMAGE, "trivy image") + trivy_findings(TRIVY_CONFIG, "trivy config")
    assert [(f.id, f.severity, f.fixable) for f in findings] == [
        ("CVE-2026-0001", "CRITICAL", True),
        ("CVE-2026-0002", "HIGH", False),
        ("CVE-2026-0003", "MEDIUM", True),
        ("AVD-DS-0002", "HIGH", True),
        ("AVD-DS-0026", "LOW", True),
        ("github-pat", "CRITICAL", True),
    ]
    assert findings[0].detail == "3.0.15 → 3.0.16 in ghcr.io/o/airia-test-pod@sha256:abc (debian 12.8)"


def test_only_fixable_high_and_critical_block() -> None:
    findings = trivy_findings(TRIVY_IMAGE, "image") + pip_audit_findings(PIP_AUDIT) + bandit_findings(BANDIT)
    blocked, waived = blocking(findings, [])
    assert [f.id for f in blocked] == ["CVE-2026-0001", "GHSA-q2x7-8rv6-6q7h", "B602"]
    assert waived == []


def test_waivers_match_by_id_or_alias_and_optional_package() -> None:
    findings = pip_audit_findings(PIP_AUDIT) + trivy_findings(TRIVY_IMAGE, "image")
    waivers = [
        Waiver("CVE-2024-56326", "sandbox not used", TODAY),
        Waiver("CVE-2026-0001", "other package only", TODAY, package="libssl3"),
    ]
    blocked, waived = blocking(findings, waivers)
    assert [f.id for f in waived] == ["GHSA-q2x7-8rv6-6q7h"]
    assert [f.id for f in blocked] == ["CVE-2026-0001"]
    assert Waiver("CVE-2026-0001", "r", TODAY, package="openssl").covers(findings[-3])


def test_waivers_need_reason_and_expiry_and_expire() -> None:
    data = {
        "exceptions": [
            {"id": "CVE-1", "reason": "not reachable", "expires": date(2026, 6, 1)},
            {"id": "CVE-2", "reason": "old", "expires": "2026-05-31"},
            {"id": "CVE-3", "expires": "2026-12-31"},
            {"id": "CVE-4", "reason": "r", "expires": "soon"},
            "CVE-5",
            {"id": "CVE-6", "reason": "r", "expires": "2027-01-01", "package": "jinja2"},
        ]
    }
    waivers, problems = load_waivers(data, TODAY)
    assert [(w.id, w.package) for w in waivers] == [("CVE-1", None), ("CVE-6", "jinja2")]
    assert problems == [
        "exceptions[1] (CVE-2): expired on 2026-05-31; fix it or review again",
        "exceptions[2]: missing reason",
        "exceptions[3] (CVE-4): expires 'soon' is not a YYYY-MM-DD date",
        "exceptions[4]: must be a mapping with id, reason and expires",
    ]
    assert load_waivers({"exceptions": None}, TODAY) == (
        [],
        ["the exceptions file needs a top-level `exceptions:` list"],
    )
    assert load_waivers(None, TODAY)[1] == ["the exceptions file needs a top-level `exceptions:` list"]


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


def test_cli_fails_on_blocking_findings_and_passes_when_waived(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = write(tmp_path, "trivy-image.json", TRIVY_IMAGE)
    exceptions = write(tmp_path, "exceptions.yaml", {"exceptions": []})
    args = ["--exceptions", str(exceptions), "--trivy", str(image), "--today", "2026-06-01"]
    assert security_gate.main(args) == 1
    out = capsys.readouterr().out
    assert "### Security gate failed: 1 blocking, 0 waived" in out
    assert "| blocking | trivy trivy-image | CVE-2026-0001 | openssl | CRITICAL |" in out
    write(
        tmp_path, "exceptions.yaml", {"exceptions": [{"id": "CVE-2026-0001", "reason": "r", "expires": "2026-07-01"}]}
    )
    assert security_gate.main(args) == 0
    assert "### Security gate passed: 0 blocking, 1 waived" in capsys.readouterr().out
    assert security_gate.main([*args[:-1], "2026-07-02"]) == 1  # the exception expired
    assert "expired on 2026-07-01" in capsys.readouterr().out


def test_cli_reads_every_report_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--exceptions",
        str(write(tmp_path, "e.yaml", {"exceptions": []})),
        "--trivy",
        str(write(tmp_path, "trivy-config.json", TRIVY_CONFIG)),
        "--pip-audit",
        str(write(tmp_path, "pip-audit.json", PIP_AUDIT)),
        "--bandit",
        str(write(tmp_path, "bandit.json", BANDIT)),
    ]
    assert security_gate.main(args) == 1
    assert "4 blocking" in capsys.readouterr().out  # misconfiguration DS002, the secret, jinja2, B602
    clean = ["--exceptions", args[1], "--bandit", str(write(tmp_path, "b.json", {"results": []}))]
    assert security_gate.main(clean) == 0


def test_cli_refuses_missing_or_broken_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exceptions = write(tmp_path, "e.yaml", {"exceptions": []})
    assert security_gate.main(["--exceptions", str(exceptions)]) == 2
    assert "a gate over nothing passes nothing" in capsys.readouterr().err
    assert security_gate.main(["--exceptions", str(exceptions), "--trivy", str(tmp_path / "absent.json")]) == 2
    broken = tmp_path / "list.json"
    broken.write_text("[]")
    assert security_gate.main(["--exceptions", str(exceptions), "--bandit", str(broken)]) == 2
    assert security_gate.main(["--exceptions", str(tmp_path / "none.yaml"), "--bandit", str(broken)]) == 2


def test_the_repository_exceptions_file_is_valid_today() -> None:
    data = yaml.safe_load((ROOT / ".github/security-exceptions.yaml").read_text())
    assert load_waivers(data, date.today())[1] == []


def test_finding_is_hashable_for_reports() -> None:
    assert len({Finding("s", "id", "p", "HIGH", True), Finding("s", "id", "p", "HIGH", True)}) == 1
