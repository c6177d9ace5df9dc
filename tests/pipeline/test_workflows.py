"""The workflows: the three strict linters (each proven to catch a real mistake) and the pipeline's own rules."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_release
import pytest
import yaml

from tests.pipeline.helpers import ROOT, SCRIPTS

WORKFLOWS = ROOT / ".github" / "workflows"
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
LOCAL_ACTIONS = sorted((ROOT / ".github" / "actions").glob("*/action.yml"))
EXPECTED_WORKFLOWS = {
    "test.yml",
    "security.yml",
    "release.yml",
    "rollback.yml",
    "performance-monitoring.yml",
    "registry-cleanup.yml",
}
INSTALL = {
    "actionlint": "go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12",
    "shellcheck": "apt-get install shellcheck",
    "zizmor": "pip install zizmor (pinned in requirements-dev.txt)",
    "check-jsonschema": "pip install check-jsonschema (pinned in requirements-dev.txt)",
}
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def tool(name: str) -> str:
    """The tool's path; a missing tool fails under CI=true (a gate that cannot run must not pass), else skips."""
    gobin = Path(os.environ.get("GOPATH") or Path.home() / "go").joinpath("bin", name)
    found = shutil.which(name) or (str(gobin) if gobin.is_file() else None)
    if found:
        return found
    message = f"{name} is not installed; install it with: {INSTALL[name]}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def files_to_lint(directory: Path) -> list[Path]:
    """Every workflow file; finding none fails, so a moved or emptied directory cannot pass the linters."""
    found = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    if not found:
        pytest.fail(f"no workflow files in {directory}: the linters would check nothing", pytrace=False)
    return found


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("actionlint"), "-shellcheck", tool("shellcheck"), *map(str, files)])


def zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    # "no findings above low": medium, high and error-level findings fail
    return run([tool("zizmor"), "--offline", "--no-progress", "--min-severity", "medium", *map(str, paths)])


def jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files)])


# --- the linters on the real files ----------------------------------------------------------------------------


def test_the_six_workflows_exist() -> None:
    assert {path.name for path in files_to_lint(WORKFLOWS)} == EXPECTED_WORKFLOWS


def test_actionlint_with_shellcheck_passes() -> None:
    result = actionlint(*files_to_lint(WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_offline_finds_nothing_above_low() -> None:
    result = zizmor(*files_to_lint(WORKFLOWS), *LOCAL_ACTIONS, DEPENDABOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_match_the_github_workflow_schema() -> None:
    result = jsonschema("vendor.github-workflows", *files_to_lint(WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_local_actions_match_the_github_action_schema() -> None:
    assert LOCAL_ACTIONS, "the local actions are gone: .github/actions/*/action.yml"
    result = jsonschema("vendor.github-actions", *LOCAL_ACTIONS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_matches_its_schema_and_covers_every_ecosystem() -> None:
    result = jsonschema("vendor.dependabot", DEPENDABOT)
    assert result.returncode == 0, result.stdout + result.stderr
    ecosystems = {update["package-ecosystem"] for update in yaml.safe_load(DEPENDABOT.read_text())["updates"]}
    assert ecosystems == {"pip", "docker", "docker-compose", "github-actions"}


def test_an_empty_workflow_directory_fails_instead_of_passing(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="the linters would check nothing"):
        files_to_lint(tmp_path)


# --- each linter catches a real mistake (so a green run means something) ---------------------------------------

BROKEN_SHELL = """\
name: broken
on: push
permissions: {}
jobs:
  job:
    runs-on: ubuntu-24.04
    timeout-minutes: 5
    steps:
      - run: |
          files=$(ls)
          echo $files
"""
INJECTION = """\
name: injection
on: pull_request_target
permissions: {}
jobs:
  job:
    runs-on: ubuntu-24.04
    timeout-minutes: 5
    steps:
      - run: echo "${{ github.event.pull_request.title }}"
"""
SCHEMA_ERROR = """\
name: schema
on: push
jobs:
  job:
    runs-on: ubuntu-24.04
    timeout-minutes: five
    step: []
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_actionlint_reports_shellcheck_findings(tmp_path: Path) -> None:
    result = actionlint(write(tmp_path, "broken.yml", BROKEN_SHELL))
    assert result.returncode != 0 and "SC2086" in result.stdout


def test_zizmor_reports_template_injection(tmp_path: Path) -> None:
    result = zizmor(write(tmp_path, "injection.yml", INJECTION))
    assert result.returncode != 0 and "template-injection" in result.stdout


def test_check_jsonschema_reports_schema_errors(tmp_path: Path) -> None:
    assert jsonschema("vendor.github-workflows", write(tmp_path, "schema.yml", SCHEMA_ERROR)).returncode != 0
    bad = write(tmp_path, "dependabot.yml", "version: 2\nupdates:\n  - package-ecosystem: pip\n")
    assert jsonschema("vendor.dependabot", bad).returncode != 0


# --- the pipeline's own rules -----------------------------------------------------------------------------------


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def workflows() -> list[tuple[str, dict[Any, Any]]]:
    return [(path.name, load(path)) for path in files_to_lint(WORKFLOWS)]


def steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(name, job, step) for name, job in workflow["jobs"].items() for step in job.get("steps", [])]


@pytest.mark.parametrize(("name", "workflow"), workflows())
def test_least_privilege_and_timeouts(name: str, workflow: dict[Any, Any]) -> None:
    assert workflow["permissions"] == {}, f"{name}: top-level permissions must be {{}}"
    for job_name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{name}: job {job_name} declares no permissions"
        if "uses" not in job:  # a job that calls a reusable workflow takes the callee's timeouts
            assert isinstance(job.get("timeout-minutes"), int), f"{name}: job {job_name} has no timeout-minutes"


@pytest.mark.parametrize(("name", "workflow"), workflows())
def test_untrusted_input_reaches_shell_only_through_env(name: str, workflow: dict[Any, Any]) -> None:
    for job_name, _, step in steps(workflow):
        script = step.get("run", "")
        assert "${{" not in script, f"{name}: {job_name}: expression inside run: {script[:80]!r}"
        assert "$RANDOM" not in script and "would delete" not in script


def test_third_party_actions_are_pinned_by_commit_with_a_version_comment() -> None:
    pins = []
    for path in files_to_lint(WORKFLOWS):
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:- )?uses: (.+)$", line)
            if match and not match[1].startswith("./"):
                pins.append(match[1])
                assert SHA_PIN.match(match[1]), f"{path.name}: not pinned by commit SHA with a version comment: {line}"
    assert len(pins) > 10
    for action in {pin.split("@")[0] for pin in pins}:  # one pin per action across the workflows
        assert len({pin for pin in pins if pin.startswith(f"{action}@")}) == 1, action


@pytest.mark.parametrize(("name", "workflow"), workflows())
def test_artifacts_survive_a_re_run(name: str, workflow: dict[Any, Any]) -> None:
    """upload-artifact v4+ refuses a name that exists on the run, and a re-run job is the same run."""
    for job_name, _, step in steps(workflow):
        if step.get("uses", "").startswith("actions/upload-artifact@"):
            upload = step["with"]
            assert "github.run_attempt" in upload["name"] or upload.get("overwrite") is True, (name, job_name)


@pytest.mark.parametrize(("name", "workflow"), workflows())
def test_checkout_keeps_no_credentials_unless_the_job_pushes(name: str, workflow: dict[Any, Any]) -> None:
    for job_name, job, step in steps(workflow):
        if not step.get("uses", "").startswith("actions/checkout@"):
            continue
        persist = step.get("with", {}).get("persist-credentials")
        if persist is True:
            assert job["permissions"].get("contents") == "write", f"{name}: {job_name} keeps credentials needlessly"
        else:
            assert persist is False, f"{name}: {job_name}: set persist-credentials: false"


def test_workflows_call_modules_that_exist_and_every_module_is_used() -> None:
    text = "\n".join(path.read_text() for path in files_to_lint(WORKFLOWS))
    called = set(re.findall(r"python \.github/scripts/(\w+)\.py", text))
    modules = {path.stem for path in SCRIPTS.glob("*.py")}
    assert called <= modules, called - modules
    assert modules - called == {"versions", "actions_io", "helm_release"}  # helpers the called modules import


def test_tool_pins_agree_with_the_ci_script_and_requirements() -> None:
    ci = dict(re.findall(r"^(\w+_VERSION)=(\S+)$", (ROOT / ".ci/run").read_text(), re.M))
    test_env = load(WORKFLOWS / "test.yml")["env"]
    for name in ("HELM_VERSION", "KUBECONFORM_VERSION", "ACTIONLINT_VERSION", "CHECKOV_VERSION"):
        assert str(test_env[name]) == ci[name], name

    def pins(path: Path) -> dict[str, str]:
        lines = path.read_text().splitlines()
        return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))

    runtime = {name.lower(): version for name, version in pins(ROOT / "requirements.txt").items()}
    for name, version in pins(ROOT / ".github/requirements-scripts.txt").items():
        assert runtime[name.lower()] == version, name


def test_release_flow_order() -> None:
    jobs = load(WORKFLOWS / "release.yml")["jobs"]
    assert jobs["image"]["needs"] == ["prepare", "test"]
    assert "scan" in jobs["publish"]["needs"]  # nothing is tagged before the exact digest passed the scan
    assert jobs["rollback"]["uses"] == "./.github/workflows/rollback.yml"
    assert jobs["notify"]["if"] == "always()"
    rollback = load(WORKFLOWS / "rollback.yml")
    assert set(rollback[True]["workflow_dispatch"]["inputs"]) == {"environment", "revision", "reason"}
    assert rollback["jobs"]["rollback"]["environment"] == "${{ inputs.environment }}"


def test_rollback_runbook_matches_the_workflows() -> None:
    runbook = (ROOT / "ROLLBACK.md").read_text()
    release, rollback = (WORKFLOWS / "release.yml").read_text(), (WORKFLOWS / "rollback.yml").read_text()
    policy = "--deadline 300 --failures 3 --window 60 --max-restarts 0 --successes 3"
    assert policy in release and policy in rollback  # the gate after a deploy and after a rollback agree
    for described in ("3 healthy answers in a row", "fails 3 times within 60 s", "300 s pass", "--max-restarts 0"):
        assert described in runbook, described
    for name in load(WORKFLOWS / "rollback.yml")[True]["workflow_dispatch"]["inputs"]:
        assert f"| `{name}` |" in runbook, name
    for artifact in ("rollback-report-", "deploy-report-staging-"):
        assert artifact in runbook and artifact in release + rollback, artifact
    commands = ("helm rollback", "helm history", "health_gate.py rollback-target", "--reset-then-reuse-values")
    for command in (*commands, "health_gate.py locate", "app.kubernetes.io/instance="):
        assert command in runbook and command in release + rollback, command
    variables = ("KUBECONFIG", "HELM_RELEASE", "HELM_NAMESPACE", "HEALTH_GATE_VERDICT", "HEALTH_GATE_USERNAME")
    for name in (*variables, "STAGING_DEPLOY"):
        assert f"`{name}`" in runbook and name in release + rollback, name


def step_named(workflow: dict[Any, Any], name: str) -> dict[str, Any]:
    (found,) = [step for _, _, step in steps(workflow) if step.get("name") == name]
    return found


def test_the_gate_after_a_rollback_is_the_gate_after_a_deploy() -> None:
    """Same locate, same script, same verdict switch: the runbook promises the same health gate."""
    release, rollback = load(WORKFLOWS / "release.yml"), load(WORKFLOWS / "rollback.yml")
    deploy_gate, rollback_gate = (
        step_named(release, "Health gate"),
        step_named(rollback, "Health gate after the rollback"),
    )
    assert deploy_gate["run"] == rollback_gate["run"]
    assert {**deploy_gate["env"], "REPORT_DIR": ""} == {**rollback_gate["env"], "REPORT_DIR": ""}
    assert (deploy_gate["env"]["REPORT_DIR"], rollback_gate["env"]["REPORT_DIR"]) == (
        "deploy-report",
        "rollback-report",
    )
    assert deploy_gate["env"]["CHECK_VERDICT"] == "${{ vars.HEALTH_GATE_VERDICT == 'true' }}"
    assert deploy_gate["env"]["HEALTH_GATE_USERNAME"] == "${{ vars.HEALTH_GATE_USERNAME || 'admin' }}"
    assert "verdict=(--verdict)" in deploy_gate["run"] and '"${verdict[@]}"' in deploy_gate["run"]
    locate_step = "Where the release is (its Service, pods and auth Secret, by label)"
    assert step_named(release, locate_step)["run"] == step_named(rollback, locate_step)["run"]
    for workflow in (release, rollback):
        names = [step.get("name") for _, _, step in steps(workflow)]
        assert names.index(locate_step) + 1 == names.index(
            "Health gate" if workflow is release else "Health gate after the rollback"
        )


def test_the_gate_reads_what_locate_writes() -> None:
    fields = {field.name for field in dataclasses.fields(helm_release.Located)}
    for path in (WORKFLOWS / "release.yml", WORKFLOWS / "rollback.yml"):
        used = set(re.findall(r"steps\.locate\.outputs\.(\w+)", path.read_text()))
        assert used and used <= fields, (path.name, used - fields)
    runbook = (ROOT / "ROLLBACK.md").read_text()
    shell_names = set(re.findall(r"\$([a-z_]+)\b", runbook[runbook.index("health_gate.py locate --objects") :]))
    assert shell_names == {"service", "port", "selector", "auth_secret", "deployment"}
    assert shell_names <= fields


def test_no_object_name_is_guessed_from_the_release_name() -> None:
    """The chart names its objects `<release>-airia-test-pod` unless overridden: only the label finds them."""
    guessed = re.compile(r"(?:service|deploy|deployment|secret)/\$\{?RELEASE|\$\{?RELEASE\}?-auth|<release>-auth")
    for path in (WORKFLOWS / "release.yml", WORKFLOWS / "rollback.yml", ROOT / "ROLLBACK.md"):
        text = path.read_text()
        assert not guessed.search(text), (path.name, guessed.search(text))
        assert ":8080" not in text and "HEALTH_GATE_USERNAME=admin" not in text, path.name


def test_registry_cleanup_passes_raw_inputs_and_asks_the_api_for_the_owner_type() -> None:
    text = (WORKFLOWS / "registry-cleanup.yml").read_text()
    env = load(WORKFLOWS / "registry-cleanup.yml")["jobs"]["cleanup"]["env"]
    # `inputs.keep_dev || 10` would turn an explicit 0 into 10; retention.py applies defaults to empty values only
    assert env["KEEP_DEV"] == "${{ inputs.keep_dev }}" and env["MIN_AGE_DAYS"] == "${{ inputs.min_age_days }}"
    assert '--keep-dev "$KEEP_DEV" --min-age-days "$MIN_AGE_DAYS"' in text
    # a scheduled run's event payload may carry no repository owner
    assert "github.event.repository" not in text
    assert 'gh api "repos/${GITHUB_REPOSITORY}" --jq .owner.type' in text
