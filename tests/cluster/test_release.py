"""The release pipeline's gate and rollback, run as release.yml, rollback.yml and ROLLBACK.md run them, against a
real release: a healthy upgrade is promoted, a server that crashes after it became ready is rolled back, and a
config that never becomes ready fails the upgrade and is rolled back by hand, step by step as ROLLBACK.md says."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster import image, netns, node
from tests.cluster.conftest import CHART, Targets, create_secret, helm
from tests.cluster.layout import admin_kubeconfig, kubernetes_bin
from tests.deploy.tools import find

ROOT = Path(__file__).resolve().parents[2]
GATE = ROOT / ".github" / "scripts" / "health_gate.py"
NAMESPACE = "airia-release"
RELEASE = "gated"
# the workflows' own settings for the gate, with a shorter deadline
GATE_POLICY = ["--deadline", "120", "--failures", "3", "--window", "60", "--max-restarts", "0", "--successes", "3"]
CRASH_AFTER_SECONDS = 10  # after the startup probe passed, within the gate's first observations


def shell(
    script: str, workdir: Path, env: dict[str, str] | None = None, timeout: float = 400
) -> subprocess.CompletedProcess[str]:
    """A workflow step or a runbook block: bash inside the node, kubectl and helm on PATH, the admin kubeconfig."""
    tools = f"{kubernetes_bin('kubectl').parent}:{Path(str(find('helm'))).parent}"
    environment = {
        **os.environ,
        "PATH": f"{tools}:{os.environ['PATH']}",
        "KUBECONFIG": str(admin_kubeconfig()),
        "RELEASE": RELEASE,
        "NAMESPACE": NAMESPACE,
        **(env or {}),
    }
    # background jobs (port-forwards) end with the step, as they do with a runner's shell
    wrapped = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    return subprocess.run(
        netns.command(["bash", "-c", wrapped]),
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def chart_version(tmp_path: Path, app_version: str) -> Path:
    """The chart as a release pipeline would publish it for another app version."""
    copy = tmp_path / f"chart-{app_version}"
    shutil.copytree(CHART, copy)
    metadata = yaml.safe_load((copy / "Chart.yaml").read_text())
    metadata["appVersion"] = app_version
    (copy / "Chart.yaml").write_text(yaml.safe_dump(metadata))
    return copy


def gate(workdir: Path) -> tuple[int, dict[str, str], str]:
    """release.yml's "Where the release is" and "Health gate" steps, as written there."""
    output = workdir / "github-output"
    output.write_text("")
    located = shell(
        f'kubectl get service,deployment --namespace "$NAMESPACE" -l "app.kubernetes.io/instance=${{RELEASE}}" '
        f"-o json > objects.json\npython {GATE} locate --objects objects.json",
        workdir,
        {"GITHUB_OUTPUT": str(output)},
    )
    assert located.returncode == 0, located.stderr
    where = outputs(output)
    output.write_text("")
    polled = shell(
        f'kubectl port-forward --namespace "$NAMESPACE" "service/{where["service"]}" "18080:{where["port"]}" '
        "> port-forward.log 2>&1 &\n"
        "for _ in $(seq 30); do (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null && break; sleep 1; done\n"
        f"python {GATE} poll --url http://127.0.0.1:18080 {' '.join(GATE_POLICY)} "
        f'--restarts-command "kubectl get pods --namespace $NAMESPACE -l {where["selector"]} -o json" '
        "--report health-gate.json",
        workdir,
        {"GITHUB_OUTPUT": str(output)},
    )
    return polled.returncode, outputs(output) | {"stdout": polled.stdout}, polled.stderr


def history() -> list[dict[str, object]]:
    return list(json.loads(helm("history", RELEASE, "--namespace", NAMESPACE, "--output", "json").stdout))


@pytest.fixture(scope="module")
def release(app_image: image.BuiltImage, targets: Targets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    workdir = tmp_path_factory.mktemp("release")
    (workdir / ".github").symlink_to(ROOT / ".github")  # the runbook names the gate by its path in the repository
    node.kubectl("create", "namespace", NAMESPACE)
    create_secret(NAMESPACE, "airia-postgres", {"password": targets.postgres.password})
    create_secret(NAMESPACE, "minio-credentials", {"secret-key": targets.s3.secret_access_key})
    values = workdir / "values.yaml"
    values.write_text(yaml.safe_dump(targets.values(app_image)))
    helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values), "--wait", "--timeout", "180s")
    yield workdir
    helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
    node.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False)


def upgrade(chart: Path, tag: str, *extra: str, timeout: str = "180s") -> subprocess.CompletedProcess[str]:
    """release.yml's `helm upgrade --install ... --reset-then-reuse-values --set-string image... --wait`."""
    return helm(
        "upgrade", "--install", RELEASE, str(chart), "--namespace", NAMESPACE, "--reset-then-reuse-values",
        "--set-string", f"image.tag={tag}", *extra, "--wait", "--timeout", timeout,
        check=False,
    )  # fmt: skip


def test_a_healthy_upgrade_is_promoted(release: Path, app_image: image.BuiltImage) -> None:
    upgraded = upgrade(CHART, app_image.tag, "--set-string", "podAnnotations.deployed-by=release-pipeline")
    assert upgraded.returncode == 0, upgraded.stderr
    code, decided, log = gate(release)
    assert (code, decided.get("action")) == (0, "promote"), decided | {"stderr": log}


def test_a_server_that_crashes_after_becoming_ready_is_rolled_back(
    release: Path, app_image: image.BuiltImage, tmp_path: Path
) -> None:
    crashing = image.derived(
        app_image,
        "crash",
        [
            "python",
            "-c",
            "import subprocess, sys, time\n"
            "server = subprocess.Popen([sys.executable, '-m', 'app', *sys.argv[1:]])\n"
            f"try:\n    sys.exit(server.wait(timeout={CRASH_AFTER_SECONDS}))\n"  # a command that ends by itself
            "except subprocess.TimeoutExpired:\n    server.kill()\n    sys.exit(3)",
        ],
    )
    node.import_image(crashing.archive)
    upgraded = upgrade(chart_version(tmp_path, "9.9.9-crash"), crashing.tag)
    assert upgraded.returncode == 0, upgraded.stderr  # --wait is satisfied: the pod did become ready
    code, decided, log = gate(release)
    assert (code, decided.get("action")) == (1, "rollback"), decided | {"stderr": log}
    assert "restart" in decided["reason"] or "readiness" in decided["reason"], decided

    # rollback.yml: helm history, the target revision, helm rollback --wait, the gate again
    output = release / "github-output"
    output.write_text("")
    steps = shell(
        'helm history "$RELEASE" --namespace "$NAMESPACE" --max 50 --output json > history-before.json\n'
        f"python {GATE} rollback-target --history history-before.json\n",
        release,
        {"GITHUB_OUTPUT": str(output)},
    )
    assert steps.returncode == 0, steps.stderr
    target = outputs(output)["revision"]
    assert history()[int(target) - 1]["app_version"] != "9.9.9-crash"
    rolled = shell(f'helm rollback "$RELEASE" "{target}" --namespace "$NAMESPACE" --wait --timeout 3m', release)
    assert rolled.returncode == 0, rolled.stderr
    code, decided, log = gate(release)
    assert (code, decided.get("action")) == (0, "promote"), decided | {"stderr": log}
    assert history()[-1]["description"] == f"Rollback to {target}"


def _runbook_block(heading: str) -> str:
    text = (ROOT / "ROLLBACK.md").read_text()
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, heading
    return found.group(1)


def test_a_config_that_never_becomes_ready_fails_the_upgrade_and_rollback_md_brings_it_back(
    release: Path, app_image: image.BuiltImage, targets: Targets, tmp_path: Path
) -> None:
    values = targets.values(app_image)
    values["targets"][0] |= {"sslmode": "disable", "sslrootcert": "/etc/ssl/certs/ca-certificates.crt"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"targets": values["targets"]}))
    # past the validation hook (--no-hooks), the pod itself refuses the file: live, never ready
    failed = upgrade(chart_version(tmp_path, "9.9.9-unready"), app_image.tag, "-f", str(broken), "--no-hooks",
                     timeout="60s")  # fmt: skip
    assert failed.returncode != 0  # release.yml's Outcome step turns this into a rollback
    new = json.loads(
        node.kubectl("-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "json")
    )["items"]
    unready = [p for p in new if p["metadata"]["labels"].get("app.kubernetes.io/name") and not all(
        c["ready"] for c in p["status"].get("containerStatuses", [])
    )]  # fmt: skip
    assert unready, [p["metadata"]["name"] for p in new]
    newest = max(unready, key=lambda p: p["metadata"]["creationTimestamp"])
    (status,) = newest["status"]["containerStatuses"]
    assert status["started"] and status["restartCount"] == 0  # live: liveness passes, nothing restarts it
    log = node.kubectl("-n", NAMESPACE, "logs", newest["metadata"]["name"])
    assert "sslrootcert is only used with sslmode" in log

    # ROLLBACK.md, "Manual rollback with plain helm", as written (its RELEASE/NAMESPACE line names ours)
    block = _runbook_block("Manual rollback with plain helm")
    block = re.sub(r"^RELEASE=.*$", "", block, flags=re.M)
    before_rollback, rollback_line = block.split("helm rollback", 1)
    listed = shell(before_rollback, release)
    assert listed.returncode == 0, listed.stderr
    revision = listed.stdout.strip().splitlines()[-1]
    assert history()[int(revision) - 1]["app_version"] != "9.9.9-unready"
    rolled = shell("helm rollback" + rollback_line.replace("<revision>", revision), release)
    assert rolled.returncode == 0, rolled.stderr

    # ROLLBACK.md, "How to verify", as written
    verified = shell(_runbook_block("How to verify").replace("--deadline 300", "--deadline 120"), release, timeout=600)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "promote:" in verified.stdout
    assert f"Rollback to {revision}" in verified.stdout
    assert "READY" in verified.stdout
