"""The pin record (.github/pins.yaml) against what the pipeline really runs, and no unpinned code in any `run:`.

A Dependabot update moves a SHA or a digest in a workflow; these tests then fail with what the reviewer has to
verify before recording the new pin, so a pin can never silently go back to a dead runtime or an unchecked SHA.
"""

from __future__ import annotations

import datetime
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pipeline.helpers import ROOT

GITHUB = ROOT / ".github"
RECORD = GITHUB / "pins.yaml"
COMPOSE = ROOT / "docker-compose.test.yml"
LIVE_RUNTIMES = {"node24", "composite", "docker"}
USES = re.compile(r"^\s*(?:- )?uses:\s*(?P<ref>\S+)(?P<comment>.*)$")
PINNED_USES = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")
VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def record() -> dict[str, Any]:
    data = yaml.safe_load(RECORD.read_text())
    assert isinstance(data, dict) and set(data) == {"actions", "images", "tools"}
    return data


def action_files() -> list[Path]:
    """The workflows and the repository's own composite actions: everything whose `uses:` GitHub runs."""
    files = sorted([*(GITHUB / "workflows").glob("*.yml"), *(GITHUB / "actions").glob("*/action.yml")])
    assert files, "no workflow files found"
    return files


def what_to_verify(action: str, sha: str, version: str) -> str:
    owner_repo = "/".join(action.split("/")[:2])
    path = "/".join(action.split("/")[2:])
    return (
        f"\nTo accept {action}@{sha} as {version}, verify it in https://github.com/{owner_repo} itself"
        f" (not from another project's workflow):\n"
        f"  git tag --points-at {sha}   must list {version} (the exact version, also in the `# {version}` comment)\n"
        f"  git show {sha}:{path + '/' if path else ''}action.yml   runs.using must be node24, composite or docker\n"
        f"then record version, sha, runs and today's date under actions.{action} in .github/pins.yaml."
    )


# --- the record itself --------------------------------------------------------------------------------------


def test_the_record_is_complete_and_well_formed() -> None:
    today = datetime.datetime.now(datetime.UTC).date()
    pins = record()
    for action, pin in pins["actions"].items():
        assert set(pin) == {"version", "sha", "runs", "verified"}, action
        assert VERSION.match(pin["version"]), f"{action}: an exact version vX.Y.Z, not {pin['version']!r}"
        assert re.fullmatch(r"[0-9a-f]{40}", pin["sha"]), f"{action}: a full 40-character commit SHA"
        assert pin["runs"] in LIVE_RUNTIMES, f"{action}: runs.using {pin['runs']!r} is not a runtime GitHub runs"
        assert isinstance(pin["verified"], datetime.date) and pin["verified"] <= today, action
    for service, pin in pins["images"].items():
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", pin["image"]), f"{service}: image is name:tag"
        if pin["digest"] is None:
            assert len(pin.get("unverified", "")) > 40, f"{service}: a bare tag must say why it has no digest"
        else:
            assert DIGEST.match(pin["digest"]), service
            assert isinstance(pin["verified"], datetime.date) and pin["verified"] <= today, service
            assert len(pin.get("source", "")) > 40, f"{service}: say where the digest was verified"
    for tool, pin in pins["tools"].items():
        assert VERSION.match(pin["version"]) and re.fullmatch(r"[0-9a-f]{64}", pin["sha256"]), tool
        assert pin["url"].startswith("https://") and pin["version"] in pin["url"], tool
        assert isinstance(pin["verified"], datetime.date) and pin["verified"] <= today, tool
        assert len(pin.get("source", "")) > 40, tool


# --- actions ----------------------------------------------------------------------------------------------------


def third_party_uses() -> Iterator[tuple[str, str, str]]:
    """(file, reference, comment) for every `uses:` that is not a local action or workflow."""
    for path in action_files():
        for line in path.read_text().splitlines():
            match = USES.match(line)
            if match and not match["ref"].startswith("./"):
                yield path.relative_to(ROOT).as_posix(), match["ref"], match["comment"].strip()


def test_every_action_is_the_recorded_sha_of_a_live_runtime() -> None:
    actions = record()["actions"]
    problems = []
    for where, ref, comment in third_party_uses():
        pinned = PINNED_USES.match(ref)
        if not pinned:
            problems.append(f"{where}: {ref} is not pinned by a full commit SHA")
            continue
        action, sha = pinned["action"], pinned["sha"]
        version = comment.removeprefix("# ")
        pin = actions.get(action)
        if pin is None or pin["sha"] != sha or pin["version"] != version:
            recorded = f"{pin['sha']} # {pin['version']}" if pin else "nothing"
            problems.append(f"{where}: {action}@{sha} {comment!r}; the record has {recorded}")
            problems.append(what_to_verify(action, sha, version or "<exact version>"))
    assert not problems, "\n".join(problems)


def test_every_recorded_action_is_used() -> None:
    used = {PINNED_USES.match(ref)["action"] for _, ref, _ in third_party_uses() if PINNED_USES.match(ref)}  # type: ignore[index]
    stale = set(record()["actions"]) - used
    assert not stale, f"no longer used, remove from .github/pins.yaml: {sorted(stale)}"


def test_no_setup_action_downloads_trivy_at_run_time() -> None:
    """The Trivy actions fetched an install script or a checksum file at run time; the local action does not."""
    for where, ref, _ in third_party_uses():
        assert not ref.startswith(("aquasecurity/trivy-action", "aquasecurity/setup-trivy")), where


def test_the_trivy_install_checks_the_recorded_digest() -> None:
    trivy = record()["tools"]["trivy"]
    action = yaml.safe_load((GITHUB / "actions" / "install-trivy" / "action.yml").read_text())
    (step,) = action["runs"]["steps"]
    assert step["env"] == {"TRIVY_VERSION": trivy["version"], "TRIVY_SHA256": trivy["sha256"]}
    script = step["run"]
    # the URL the script builds is the recorded one, and nothing is unpacked before the check passed
    url = "https://github.com/aquasecurity/trivy/releases/download/${TRIVY_VERSION}/trivy_${TRIVY_VERSION#v}_Linux-64bit.tar.gz"
    assert (
        url.replace("${TRIVY_VERSION}", trivy["version"]).replace("${TRIVY_VERSION#v}", trivy["version"][1:])
        == trivy["url"]
    )
    assert url in script
    assert script.index("sha256sum --check --strict") < script.index("tar --extract")
    for name in ("security.yml", "release.yml"):
        text = (GITHUB / "workflows" / name).read_text()
        assert "uses: ./.github/actions/install-trivy" in text, name


# --- service images ---------------------------------------------------------------------------------------------


def service_images() -> Iterator[tuple[str, str, str]]:
    """(file, service, image) for the workflows' service containers and docker-compose.test.yml's services."""
    for path in sorted((GITHUB / "workflows").glob("*.yml")):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for service, spec in (job.get("services") or {}).items():
                yield path.name, service, spec["image"]
    for service, spec in yaml.safe_load(COMPOSE.read_text())["services"].items():
        yield COMPOSE.name, service, spec["image"]


def job_containers() -> Iterator[tuple[str, str, str]]:
    """(file, name, image) for the jobs that run in a container, named by the image's repository."""
    for path in sorted((GITHUB / "workflows").glob("*.yml")):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            if container := job.get("container"):
                image = container["image"] if isinstance(container, dict) else container
                yield path.name, image.split(":")[0].rsplit("/", 1)[-1], image


def test_service_images_are_the_recorded_digests() -> None:
    images = record()["images"]
    problems = []
    for where, service, image in [*service_images(), *job_containers()]:
        pin = images.get(service)
        if pin is None:
            problems.append(f"{where}: service {service} ({image}) is not in .github/pins.yaml images")
            continue
        expected = f"{pin['image']}@{pin['digest']}" if pin["digest"] else pin["image"]
        if image != expected:
            problems.append(
                f"{where}: {service} runs {image}, the record has {expected}. Verify the new digest from a public"
                f" record of the registry (or `docker buildx imagetools inspect {image.split('@')[0]}`), then set"
                f" the same name:tag@digest in test.yml, docker-compose.test.yml and .github/pins.yaml (source, date)."
            )
    assert not problems, "\n".join(problems)


def test_every_recorded_image_runs_in_ci_and_in_compose() -> None:
    seen: dict[str, set[str]] = {}
    for where, service, _ in service_images():
        seen.setdefault(service, set()).add(where)
    containers = {name: {where} for where, name, _ in job_containers()}
    assert not set(containers) & set(seen), "a job container and a test service share a name"
    for service in record()["images"]:
        expected = containers.get(service, {"test.yml", COMPOSE.name})
        assert (containers | seen).get(service) == expected, (service, seen.get(service))


# --- no unpinned code in run: steps -------------------------------------------------------------------------------

PIPE_TO_SHELL = re.compile(r"\b(?:curl|wget)\b[^|;&\n]*\|\s*(?:sudo\s+)?(?:ba|z|da)?sh\b")
SHELL_OF_DOWNLOAD = re.compile(r"\b(?:ba|z|da)?sh\b\s+(?:-c\s+)?[\"']?(?:<\(|\$\()\s*(?:curl|wget)\b")
VARIABLE = re.compile(r"\$\{(\w+)(#v)?\}|\$(\w+)")
EXACT = re.compile(r"^v?\d+(\.\d+)+$")


def expand(word: str, env: Mapping[str, str]) -> str | None:
    """The word with $NAME / ${NAME} / ${NAME#v} taken from the step's env; None if a variable is not set there."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name = match[1] or match[3]
        if name not in env:
            missing = True
            return ""
        return env[name][1:] if match[2] and env[name].startswith("v") else env[name]

    expanded = VARIABLE.sub(value, word)
    return None if missing else expanded


def requirement_problems(path: Path) -> list[str]:
    """Every line of a requirements file (and the files it includes) names an exact `==` version."""
    problems = []
    for raw in path.read_text().splitlines():
        line = raw.split("#")[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            problems += requirement_problems(path.parent / line[3:].strip())
        elif not re.fullmatch(r"[\w.\[\],-]+==[\w.]+(\s*;.*)?", line):
            problems.append(
                f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {line!r} is not pinned with =="
            )
    return problems


def commands(script: str) -> Iterator[list[str]]:
    """The script's simple commands as words (continuations joined, split at ; && || |)."""
    for line in script.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                words = part.split()
            while words and re.match(r"^\w+=", words[0]):  # VAR=value prefixes
                words.pop(0)
            if words:
                yield words


def unpinned(script: str, env: Mapping[str, str], root: Path = ROOT) -> list[str]:
    """What in one `run:` script runs code that no version or digest pins."""
    problems = []
    if PIPE_TO_SHELL.search(script) or SHELL_OF_DOWNLOAD.search(script):
        problems.append("a download piped into a shell")
    if re.search(r"\b(?:curl|wget)\b", script) and "sha256sum --check" not in script:
        problems.append("a download not checked with sha256sum --check")
    for words in commands(script):
        if words[:2] in (["go", "install"], ["go", "run"]):
            for word in words[2:]:
                if word.startswith("-"):
                    continue
                module, _, version = (expand(word, env) or "@").rpartition("@")
                if not module or not EXACT.match(version):
                    problems.append(f"go {words[1]} {word}: not an exact module version")
        pip = [
            i for i, word in enumerate(words[:-1]) if Path(word).name in ("pip", "pip3") and words[i + 1] == "install"
        ]
        if pip:
            arguments = iter(words[pip[0] + 2 :])
            for word in arguments:
                if word in ("-r", "--requirement"):
                    problems += requirement_problems(root / next(arguments))
                elif not word.startswith("-"):
                    name, _, version = (expand(word, env) or "").partition("==")
                    if not name or not EXACT.match(version):
                        problems.append(f"pip install {word}: no exact == version")
    return problems


def run_steps() -> Iterator[tuple[str, str, dict[str, str]]]:
    """(where, script, env) for every `run:` in the workflows and the local composite actions."""
    for path in action_files():
        data = yaml.safe_load(path.read_text())
        jobs = data.get("jobs") or {"runs": data.get("runs", {})}
        for job_name, job in jobs.items():
            for step in job.get("steps", []):
                if "run" in step:
                    env = {**data.get("env", {}), **job.get("env", {}), **step.get("env", {})}
                    where = f"{path.relative_to(ROOT)}: {job_name}: {step.get('name', step['run'][:40])}"
                    yield where, step["run"], {key: str(value) for key, value in env.items()}


def test_no_run_step_runs_unpinned_code() -> None:
    steps = list(run_steps())
    assert len(steps) > 40
    problems = [f"{where}: {problem}" for where, script, env in steps for problem in unpinned(script, env)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("script", "env", "finding"),
    [
        ("curl -sSfL https://example.invalid/install.sh | sh -s -- -b /usr/local/bin", {}, "piped into a shell"),
        ('bash -c "$(curl -fsSL https://example.invalid/install.sh)"', {}, "piped into a shell"),
        ("wget -qO- https://example.invalid/x | sudo bash", {}, "piped into a shell"),
        ("curl -fsSLo tool.tgz https://example.invalid/tool.tgz\ntar xzf tool.tgz", {}, "not checked with sha256sum"),
        ("go install github.com/rhysd/actionlint/cmd/actionlint@latest", {}, "not an exact module version"),
        ("go install github.com/rhysd/actionlint/cmd/actionlint", {}, "not an exact module version"),
        ('go install "example.com/tool@${TOOL_VERSION}"', {}, "not an exact module version"),
        ('go install "example.com/tool@${TOOL_VERSION}"', {"TOOL_VERSION": "main"}, "not an exact module version"),
        ("go run example.com/gen@master ./...", {}, "not an exact module version"),
        ("python -m pip install --quiet requests", {}, "no exact == version"),
        ("pip install 'checkov>=3'", {}, "no exact == version"),
        ("export X=1 && pip install --upgrade pip", {}, "no exact == version"),
        ('pip install "checkov==${CHECKOV_VERSION}"', {}, "no exact == version"),
    ],
)
def test_the_rule_catches_unpinned_code(script: str, env: dict[str, str], finding: str) -> None:
    assert any(finding in problem for problem in unpinned(script, env)), unpinned(script, env)


@pytest.mark.parametrize(
    ("script", "env"),
    [
        ('go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"', {"HELM_VERSION": "v3.22.0"}),
        ("CGO_ENABLED=0 go install -trimpath example.com/tool@v1.2.3", {}),
        ('venv/bin/pip install --quiet "checkov==${CHECKOV_VERSION}"', {"CHECKOV_VERSION": "3.3.30"}),
        ("python -m pip install --disable-pip-version-check -r requirements-dev.txt", {}),
        (
            'curl -fsSL --output "$f" "$URL"\necho "${SHA}  $f" | sha256sum --check --strict\ntar -xzf "$f"',
            {"URL": "https://example.invalid/t.tgz", "SHA": "0" * 64},
        ),
        ("trivy fs --format json --output reports/trivy-fs.json .", {}),
    ],
)
def test_the_rule_accepts_pinned_code(script: str, env: dict[str, str]) -> None:
    assert unpinned(script, env) == []


def test_an_unpinned_requirement_file_is_caught(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("PyYAML==6.0.3\nhttpx>=0.28\n")
    (tmp_path / "dev.txt").write_text("# dev\n-r base.txt\npytest==9.2.0  # comment\nruff\n")
    problems = unpinned("pip install -r dev.txt", {}, root=tmp_path)
    assert problems == [
        f"{tmp_path}/base.txt: 'httpx>=0.28' is not pinned with ==",
        f"{tmp_path}/dev.txt: 'ruff' is not pinned with ==",
    ]


def test_the_record_tells_the_reviewer_what_to_verify() -> None:
    message = what_to_verify("github/codeql-action/upload-sarif", "a" * 40, "v4.40.0")
    assert "https://github.com/github/codeql-action " in message
    assert f"git tag --points-at {'a' * 40}   must list v4.40.0" in message
    assert f"git show {'a' * 40}:upload-sarif/action.yml" in message
    assert "actions.github/codeql-action/upload-sarif in .github/pins.yaml" in message
