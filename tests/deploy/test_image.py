"""The image's start-up, without a container engine: its venv, files, ENV, user, command and HEALTHCHECK.

The server is started twice the way a cluster would run it: bare (`docker run IMAGE`: the image's ENV only)
and deployed (the rendered Deployment's env, ConfigMap and Secret files on top). Two settings differ from a
pod: PORT points at a free port instead of 8080 (exactly the knob the image promises to honour), and
TESTPOD_HOST keeps the test server on loopback.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import image
from tests.deploy.chart import container, objects, one, template
from tests.deploy.dockerfile import healthcheck
from tests.servers import StallServer, free_port

pytestmark = pytest.mark.slow
START_TIMEOUT = 60.0
VENV_LIMIT_MB = 150


@dataclass
class RunningImage:
    process: subprocess.Popen[bytes]
    environment: dict[str, str]
    workdir: Path
    port: int
    log: Path
    seconds_to_healthy: float


def loopback(environment: dict[str, str]) -> dict[str, str]:
    return {**environment, "PORT": str(free_port()), "TESTPOD_HOST": "127.0.0.1"}


@pytest.fixture(scope="module")
def venv() -> Path:
    try:
        return image.build_venv()
    except FileNotFoundError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(str(error), pytrace=False)
        pytest.skip(str(error))


def run_healthcheck(environment: dict[str, str], workdir: Path) -> subprocess.CompletedProcess[str]:
    options, command = healthcheck(image.runtime())
    timeout = float(options.get("timeout", "30s").rstrip("s"))
    return subprocess.run(
        image.as_image_user(command),
        env=environment,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout + 5,
        check=False,
    )


def start(environment: dict[str, str], workdir: Path, args: list[str] | None = None) -> RunningImage:
    """ENTRYPOINT + CMD (or the Deployment's args, which replace CMD), as the image's user, then wait healthy."""
    stage = image.runtime()
    command = stage.exec_form("ENTRYPOINT") + (args if args is not None else stage.exec_form("CMD"))
    log = workdir.parent / f"server-{time.monotonic_ns()}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            image.as_image_user(command), env=environment, cwd=workdir, stdout=output, stderr=subprocess.STDOUT
        )
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT:
        if process.poll() is not None:
            pytest.fail(f"the image's command exited with {process.returncode}:\n{log.read_text()}")
        if run_healthcheck(environment, workdir).returncode == 0:
            return RunningImage(
                process, environment, workdir, int(environment["PORT"]), log, time.monotonic() - started
            )
        time.sleep(0.25)
    process.kill()
    pytest.fail(f"the HEALTHCHECK never passed within {START_TIMEOUT} s:\n{log.read_text()}")


def stop(running: RunningImage) -> None:
    running.process.send_signal(signal.SIGTERM)
    try:
        running.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait()


def _deployed_files(rendered: list[dict[str, Any]], root: Path) -> dict[str, str]:
    """Lay out what the kubelet would mount: the ConfigMap's file and the auth Secret's files.

    Returns the container env with mounted paths moved under `root` and secretKeyRefs resolved.
    """
    uid, gid = image.image_user()
    spec = one(rendered, "Deployment")["spec"]["template"]["spec"]
    main = container(spec)
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    secrets = {d["metadata"]["name"]: d["data"] for d in rendered if d["kind"] == "Secret"}
    moved: dict[str, str] = {}
    for mount in main["volumeMounts"]:
        volume = volumes[mount["name"]]
        local = root / mount["mountPath"].lstrip("/")
        moved[mount["mountPath"]] = str(local)
        if "configMap" in volume:
            data = one(rendered, "ConfigMap")["data"]
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(data[mount["subPath"]])
            local.chmod(0o644)
        elif "secret" in volume:
            local.mkdir(parents=True, exist_ok=True)
            for key, value in secrets[volume["secret"]["secretName"]].items():
                file = local / key
                file.write_bytes(base64.b64decode(value))
                if os.geteuid() == 0:
                    os.chown(file, 0, gid)  # the kubelet's fsGroup ownership
                file.chmod(volume["secret"]["defaultMode"])
        elif "emptyDir" in volume:
            local.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                os.chown(local, uid, gid)
    for directory in (root / "etc", root / "etc" / "airia-test-pod"):
        if directory.exists():
            directory.chmod(0o755)

    environment = {}
    for variable in main["env"]:
        if "value" in variable:
            environment[variable["name"]] = moved.get(variable["value"], variable["value"])
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            environment[variable["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
    return environment


@pytest.fixture
def files(venv: Path) -> Iterator[image.ImageRoot]:
    assembled = image.assemble(venv)
    yield assembled
    shutil.rmtree(assembled.root, ignore_errors=True)


@pytest.fixture(scope="module")
def deployed(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningImage, dict[str, Any]]]:
    """The image run as the chart's Deployment runs it, with one loopback target (so nothing leaves the host)."""
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    target = {"name": "loopback", "kind": "tcp", "host": "127.0.0.1", "port": free_port(), "required": False}
    values.write_text(yaml.safe_dump({"targets": [target]}))
    rendered = objects(template(values))
    files = image.assemble(venv)
    main = container(one(rendered, "Deployment")["spec"]["template"]["spec"])
    try:
        environment = loopback({**files.environment, **_deployed_files(rendered, files.root)})  # container env wins
        running = start(environment, files.workdir, main.get("args"))
        yield running, main
        stop(running)
    finally:
        shutil.rmtree(files.root, ignore_errors=True)


def test_healthcheck_passes_on_the_deployed_image(deployed: tuple[RunningImage, dict[str, Any]]) -> None:
    running, _ = deployed
    result = run_healthcheck(running.environment, running.workdir)
    assert result.returncode == 0, result.stderr
    assert running.seconds_to_healthy < 30


def test_it_runs_as_the_unprivileged_image_user(deployed: tuple[RunningImage, dict[str, Any]]) -> None:
    running, _ = deployed
    status = Path(f"/proc/{running.process.pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    expected = image.image_user()[0] if os.geteuid() == 0 else os.geteuid()
    assert {int(uid) for uid in uids} == {expected}
    assert expected != 0


def test_the_chart_probes_answer_on_the_port_the_image_listens_on(
    deployed: tuple[RunningImage, dict[str, Any]],
) -> None:
    running, main = deployed
    (port,) = main["ports"]
    chart_env = {e["name"]: e.get("value") for e in main["env"]}
    assert chart_env["PORT"] == str(port["containerPort"]) == image.runtime().env({})["PORT"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = main[probe]["httpGet"]
        assert get["port"] in (port["name"], port["containerPort"])
        with urllib.request.urlopen(f"http://127.0.0.1:{running.port}{get['path']}", timeout=5) as answer:
            assert answer.status == 200, probe


def test_the_secrets_come_from_the_mounted_files(deployed: tuple[RunningImage, dict[str, Any]]) -> None:
    """The chart's generated password was accepted (it is strong) and never printed."""
    running, _ = deployed
    log = running.log.read_text()
    secrets_dir = Path(running.environment["TESTPOD_SECRETS_DIR"])
    password = (secrets_dir / "auth_password").read_text()
    assert "generated" not in log.lower()
    assert password not in log
    assert "Traceback" not in log


def test_healthcheck_fails_when_nothing_answers(files: image.ImageRoot) -> None:
    assert run_healthcheck(loopback(files.environment), files.workdir).returncode != 0


def test_the_bare_image_starts_with_its_own_environment(files: image.ImageRoot) -> None:
    """`docker run IMAGE` with no config and no secrets: it generates a password, serves and is healthy."""
    environment = loopback(files.environment)
    environment["TESTPOD_SECRETS_DIR"] = str(files.root / "no-secrets")  # /etc/... of this host must not leak in
    running = start(environment, files.workdir)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{running.port}/health/live", timeout=5) as answer:
            assert answer.status == 200
    finally:
        stop(running)
    assert "password" in running.log.read_text()  # the generated one, announced once
    assert "Traceback" not in running.log.read_text()


def test_runtime_venv_stays_small(venv: Path) -> None:
    total, packages = image.package_sizes(venv)
    largest = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in packages[:6])
    assert total / 1e6 <= VENV_LIMIT_MB, f"runtime venv is {total / 1e6:.1f} MB; largest: {largest}"
    assert not [name for name, _ in packages if name in {"pip", "setuptools"}], "installers stay in the builder"


def _run_helm_test_pod(venv: Path, targets: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The chart's `helm test` Pod, run the image way: its args, its env, its mounted targets file."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"targets": targets}))
    rendered = objects(template(values))
    pod = container(one(rendered, "Pod")["spec"])
    files = image.assemble(venv)
    try:
        config = files.root / "etc" / "airia-test-pod" / "targets.yaml"
        config.parent.mkdir(parents=True)
        config.write_text(one(rendered, "ConfigMap")["data"]["targets.yaml"])
        for directory in (config.parent.parent, config.parent):
            directory.chmod(0o755)
        args = [str(config) if arg == "/etc/airia-test-pod/targets.yaml" else arg for arg in pod["args"]]
        command = image.runtime().exec_form("ENTRYPOINT") + args
        return subprocess.run(
            image.as_image_user(command),
            env=files.environment,
            cwd=files.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(files.root, ignore_errors=True)


def test_helm_test_pod_fails_when_not_ready_and_says_what_to_fix(venv: Path, tmp_path: Path) -> None:
    closed = free_port()
    result = _run_helm_test_pod(venv, [{"name": "db", "kind": "tcp", "host": "127.0.0.1", "port": closed}], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT READY" in result.stdout
    assert f"db: cannot connect to 127.0.0.1:{closed}" in result.stdout
    assert "fix:" in result.stdout


def test_helm_test_pod_passes_when_ready(venv: Path, tmp_path: Path, stall: StallServer) -> None:
    target = {"name": "listener", "kind": "tcp", "host": "127.0.0.1", "port": stall.port}
    result = _run_helm_test_pod(venv, [target], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "READY" in result.stdout
