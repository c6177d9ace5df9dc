"""The Dockerfile: linted by hadolint and checkov, and read for the properties the cluster relies on."""

from __future__ import annotations

import json
import re

from tests.deploy.dockerfile import DOCKERFILE, copy_sources, healthcheck, stages
from tests.deploy.tools import require, run

STAGES = stages(DOCKERFILE.read_text())
RUNTIME = STAGES[-1]


def test_hadolint_passes_at_warning_threshold() -> None:
    result = run([require("hadolint"), "--failure-threshold", "warning", "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_can_fail() -> None:
    """The gate above is real: the same hadolint flags a Dockerfile that runs as root with an unpinned base."""
    result = run([require("hadolint"), "--failure-threshold", "warning", "-"], input="FROM python\nRUN cd /tmp\n")
    assert result.returncode == 1 and "DL3006" in result.stdout


def test_checkov_finds_nothing_and_every_skip_is_justified() -> None:
    result = run(
        [
            require("checkov"),
            "--skip-download",
            "--framework",
            "dockerfile",
            "--file",
            str(DOCKERFILE),
            "--output",
            "json",
            "--compact",
        ]
    )
    report = json.loads(result.stdout)
    assert report["summary"]["failed"] == 0, [c["check_id"] for c in report["results"]["failed_checks"]]
    assert report["summary"]["passed"] > 50
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 30, skipped["check_id"]


def test_every_hadolint_ignore_is_explained() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert lines[number - 1].startswith("#") and len(lines[number - 1]) > 40, f"line {number + 1}"


def test_builder_and_runtime_share_one_pinned_slim_python_base() -> None:
    (base,) = [stage for stage in STAGES if "/" not in stage.base and ":" in stage.base]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base.base)
    assert [stage.base for stage in STAGES[1:]] == [base.name] * (len(STAGES) - 1)
    assert len(STAGES) >= 3  # base, builder, runtime


def test_runtime_stage_installs_nothing_and_copies_only_the_venv_and_the_app() -> None:
    runs = " ".join(i.arguments for i in RUNTIME.all("RUN"))
    assert not re.search(r"\b(apt-get|apt|pip|curl|wget)\b", runs), runs
    copies = [copy_sources(i) for i in RUNTIME.all("COPY")]
    assert copies[0] == ({"from": "builder"}, ["/opt/venv"], "/opt/venv")
    assert [(sources, destination) for flags, sources, destination in copies[1:]] == [(["app/"], "./app/")]


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    """Changing app/ must not invalidate the dependency layer."""
    builder = next(stage for stage in STAGES if stage.name == "builder")
    copies = [copy_sources(i)[1] for i in builder.all("COPY")]
    assert copies == [["requirements.txt"]]
    assert RUNTIME.instructions.index(RUNTIME.all("COPY")[0]) < RUNTIME.instructions.index(RUNTIME.all("COPY")[-1])


def test_runtime_runs_as_a_high_non_root_uid() -> None:
    user = RUNTIME.last("USER")
    assert user is not None
    uid, _, gid = user.arguments.partition(":")
    assert uid.isdigit() and int(uid) >= 10000, "numeric, so runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) >= 10000


def test_runtime_environment_labels_port_and_command() -> None:
    env = RUNTIME.env({"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PORT"] == "8080"
    (expose,) = RUNTIME.all("EXPOSE")
    assert expose.arguments == env["PORT"]
    assert RUNTIME.exec_form("ENTRYPOINT") + RUNTIME.exec_form("CMD") == ["python", "-m", "app", "serve"]
    labels = " ".join(i.arguments for i in RUNTIME.all("LABEL"))
    args = {i.arguments.partition("=")[0] for i in RUNTIME.all("ARG")}
    for label, arg in (("source", "SOURCE"), ("version", "VERSION"), ("revision", "REVISION")):
        assert f'org.opencontainers.image.{label}="${{{arg}}}"' in labels  # set by --build-arg in the pipeline
        assert arg in args


def test_healthcheck_uses_python_against_the_liveness_path() -> None:
    options, command = healthcheck(RUNTIME)
    assert command[:2] == ["python", "-c"]
    assert "/health/live" in command[2] and "PORT" in command[2]
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
