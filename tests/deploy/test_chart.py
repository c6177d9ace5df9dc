"""The Helm chart, rendered by the real `helm` and checked by the validators a cluster would apply.

Every values file in helm/airia-test-pod/ci/ is linted, rendered for two Kubernetes versions, validated
against those versions' schemas (kubernetes-validate and kubeconform, both strict) and scanned by checkov.
The rendered targets ConfigMap is loaded by the CLI's own parser with the variables the Deployment sets.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app import __version__
from app.checks.base import Target
from app.config import Settings, parse_targets
from tests.deploy import chart_schema
from tests.deploy.chart import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    container,
    hook,
    objects,
    one,
    render,
    render_error,
    template,
)
from tests.deploy.tools import KUBE_VERSIONS, require, run

FULLNAME = f"{RELEASE}-airia-test-pod"
VALUES = {path.stem: path for path in CI_VALUES}
CONFIG_PATH = "/etc/airia-test-pod/targets.yaml"


def values_of(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load(VALUES[name].read_text()))


def test_the_ci_folder_has_the_four_scenarios() -> None:
    assert {"minimal-values", "full-values", "existing-secret-values", "hardened-values"} <= set(VALUES)


def test_chart_metadata_follows_the_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == __version__
    assert chart["appVersion"] == __version__
    assert chart["kubeVersion"].startswith(">=")
    assert yaml.safe_load((CHART / "values.yaml").read_text())["image"]["tag"] == ""  # "" means appVersion


def test_the_targets_schema_is_generated_from_the_target_models() -> None:
    text = chart_schema.SCHEMA_PATH.read_text()
    assert text == chart_schema.render(json.loads(text)), "run: python -m tests.deploy.chart_schema"


def test_every_kind_in_the_union_is_strictly_validated() -> None:
    schema = json.loads(chart_schema.SCHEMA_PATH.read_text())
    for kind in chart_schema.target_models():
        assert schema["$defs"][f"target.{kind}"]["additionalProperties"] is False, kind


def test_values_yaml_documents_every_key() -> None:
    """Each key carries a `# --` comment, or sits inside a documented group."""
    documented_at: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    undocumented = []
    previous = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if match and not line.lstrip().startswith("-"):
            indent = len(match.group(1))
            while documented_at and documented_at[-1][0] >= indent:
                documented_at.pop()
            documented = previous.lstrip().startswith("#") or any(d for _, d in documented_at)
            if not documented and not line.rstrip().endswith(":"):
                undocumented.append(line.strip())
            documented_at.append((indent, previous.lstrip().startswith("#")))
        if line.strip():
            previous = line
    assert not undocumented


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_helm_lint_strict_passes(values: Path) -> None:
    result = run([require("helm"), "lint", "--strict", "--kube-version", "1.29.0", str(CHART), "--values", str(values)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("image.pullpolicy=Always", "additional properties 'pullpolicy' not allowed"),
        ("servce.port=80", "additional properties 'servce' not allowed"),
        ("service.port=http", "want integer"),
        ("strict=yes", "want boolean"),
        ("image.digest=latest", "does not match pattern"),
        ("securityContext.runAsUser=0", "minimum"),
        ("ingress.enabled=true,ingress.hosts=null", "hosts"),
    ],
)
def test_the_schema_rejects_typos_and_wrong_types(assignment: str, message: str) -> None:
    assert message in render_error(sets=(assignment,))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"name": "db", "kind": "postgres", "hots": "db", "database": "d", "user": "u"}, "'hots' not allowed"),
        ({"name": "db", "kind": "postgres", "host": "db", "database": "d", "user": "u", "password": "x"}, "password"),
        ({"name": "db", "kind": "postgres", "host": "db", "database": "d", "user": "u", "port": "5432"}, "integer"),
        ({"name": "db", "kind": "mongodb", "host": "db"}, "value must be one of"),
        ({"name": "Main DB", "kind": "tcp", "host": "db", "port": 5432}, "does not match pattern"),
        (
            {"name": "db", "kind": "tcp", "host": "db", "port": 5432, "secretRefs": {"password": {"key": "k"}}},
            "'secretRefs'",
        ),
        ({"name": "ai", "kind": "openai", "base_url": "https://ai.example.com/v1"}, "missing property 'secretRefs'"),
        ({"name": "ai", "kind": "anthropic", "model": "claude", "api_key": "sk-ant-x"}, "api_key"),
        ({"kind": "tcp", "host": "db", "port": 1}, "missing property 'name'"),
    ],
)
def test_the_schema_rejects_bad_targets(target: dict[str, Any], message: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"targets": [target]}))
    assert message in render_error(values)


def test_a_target_name_used_twice_is_refused(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    target = {"name": "db", "kind": "tcp", "host": "db", "port": 5432}
    values.write_text(yaml.safe_dump({"targets": [target, target]}))
    assert 'the name "db" is used twice' in render_error(values)


def test_a_secret_ref_to_a_missing_chart_secret_key_is_refused(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    target = {"name": "db", "kind": "postgres", "host": "db", "database": "d", "user": "u"}
    target["secretRefs"] = {"password": {"key": "pg-password"}}
    values.write_text(yaml.safe_dump({"targets": [target], "targetSecrets": {"other": "x"}}))
    assert 'targetSecrets has no key "pg-password"' in render_error(values)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_object_is_valid_kubernetes(
    values: Path, kube_version: str, kubeconform_schemas: Path, tmp_path: Path
) -> None:
    rendered = render(values, kube_version)
    documents = objects(rendered)
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "Pod"} <= {d["kind"] for d in documents}
    for document in documents:
        try:
            kubernetes_validate.validate(document, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{document['kind']} {document['metadata']['name']} on {kube_version}: {error}")

    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(rendered)
    location = f"{kubeconform_schemas}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}"
    location += "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    result = run(
        [
            require("kubeconform"),
            "-strict",
            "-summary",
            "-kubernetes-version",
            kube_version,
            "-schema-location",
            location,
            str(manifest),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Valid: {len(documents)}, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout


def test_kubeconform_strict_rejects_an_unknown_field(kubeconform_schemas: Path, tmp_path: Path) -> None:
    """The validation above can fail: a field Kubernetes does not know is an error, not a pass."""
    deployment = one(render(VALUES["minimal-values"]), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProb"] = {}
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump(deployment))
    location = f"{kubeconform_schemas}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}"
    location += "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    result = run(
        [
            require("kubeconform"),
            "-strict",
            "-kubernetes-version",
            "1.29.0",
            "-schema-location",
            location,
            str(manifest),
        ]
    )
    assert result.returncode == 1 and "livenessProb" in result.stdout
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.29.0", strict=True)


def test_checkov_finds_nothing_and_every_skip_is_justified(tmp_path: Path) -> None:
    for values in CI_VALUES:
        (tmp_path / f"{values.stem}.yaml").write_text(render(values))
    result = run(
        [
            require("checkov"),
            "--skip-download",
            "--framework",
            "kubernetes",
            "--directory",
            str(tmp_path),
            "--output",
            "json",
            "--compact",
        ]
    )
    report = json.loads(result.stdout)
    report = report if isinstance(report, dict) else next(r for r in report if r["check_type"] == "kubernetes")
    failed = report["results"]["failed_checks"]
    assert not failed, [(c["check_id"], c["resource"]) for c in failed]
    assert report["summary"]["passed"] > 100
    assert report["summary"]["parsing_errors"] == 0
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 30, skipped["check_id"]


# --- what the objects say ----------------------------------------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_pods_are_hardened(values: Path) -> None:
    rendered = objects(render(values))
    reads_cluster = any(t["kind"] in ("cluster", "storage") for t in yaml.safe_load(values.read_text())["targets"])
    for spec in (one(rendered, "Deployment")["spec"]["template"]["spec"], hook(rendered, "test")["spec"]):
        assert spec["automountServiceAccountToken"] is reads_cluster
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] >= 10000 and pod["runAsGroup"] >= 10000
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        main = container(spec)
        security = main["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["privileged"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["runAsUser"] >= 10000
        assert {"requests", "limits"} <= set(main["resources"])
        assert {"cpu", "memory"} <= set(main["resources"]["limits"])
        tmp = next(m for m in main["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp["name"])
    account = one(rendered, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_labels_and_selectors(values: Path) -> None:
    rendered = objects(render(values))
    selector = {"app.kubernetes.io/name": "airia-test-pod", "app.kubernetes.io/instance": RELEASE}
    deployment, service, check = one(rendered, "Deployment"), one(rendered, "Service"), hook(rendered, "test")
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    assert service["spec"]["selector"] == selector
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for document in rendered:
        labels = document["metadata"]["labels"]
        assert labels["helm.sh/chart"] == f"airia-test-pod-{__version__}"
        assert labels["app.kubernetes.io/version"] == __version__
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        if document["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert document["metadata"]["namespace"] == NAMESPACE
    # the helm test pod must never receive the Service's traffic
    assert not selector.items() <= check["metadata"]["labels"].items()


def test_probes_use_the_health_paths_on_the_container_port() -> None:
    main = container(one(render(VALUES["full-values"]), "Deployment")["spec"]["template"]["spec"])
    (port,) = main["ports"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["PORT"] == str(port["containerPort"])
    paths = {probe: main[probe]["httpGet"]["path"] for probe in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert paths == {
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
        "startupProbe": "/health/startup",
    }
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert main[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])
    # the timings come from values
    assert main["livenessProbe"]["periodSeconds"] == values_of("full-values")["probes"]["liveness"]["periodSeconds"]
    assert main["startupProbe"]["failureThreshold"] == 24


def test_image_reference_defaults_to_app_version_and_a_digest_wins() -> None:
    def image(*sets: str) -> str:
        deployment = one(template(sets=sets), "Deployment")
        return str(container(deployment["spec"]["template"]["spec"])["image"])

    assert image() == f"ghcr.io/airia/airia-test-pod:{__version__}"
    assert image("image.tag=1.2.3-rc.1") == "ghcr.io/airia/airia-test-pod:1.2.3-rc.1"
    digest = "sha256:" + "ab" * 32
    assert image("image.tag=1.2.3", f"image.digest={digest}") == f"ghcr.io/airia/airia-test-pod@{digest}"


def test_generated_auth_secret_is_mounted_for_the_settings() -> None:
    rendered = objects(render(VALUES["minimal-values"]))
    secret = one(rendered, "Secret", "-auth")
    password = base64.b64decode(secret["data"]["auth_password"]).decode()
    key = base64.b64decode(secret["data"]["secret_key"]).decode()
    assert len(password) >= 24 and len(key) >= 64  # far above the app's 12 / 32 minimums
    spec = one(rendered, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == secret["metadata"]["name"])
    mount = next(m for m in container(spec)["volumeMounts"] if m["name"] == volume["name"])
    env = {e["name"]: e.get("value") for e in container(spec)["env"]}
    assert mount["mountPath"] == env["TESTPOD_SECRETS_DIR"]
    # the password reaches the pod only as a file: never as a literal env value
    assert password not in json.dumps(spec) and key not in json.dumps(spec)


def test_existing_auth_secret_is_used_and_none_is_generated() -> None:
    rendered = objects(render(VALUES["existing-secret-values"]))
    assert not [d for d in rendered if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-auth")]
    spec = one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "auth", "secret": {"secretName": "airia-test-pod-auth", "defaultMode": 0o440}} in spec["volumes"]
    env = {e["name"]: e.get("value") for e in container(spec)["env"]}
    assert env["TESTPOD_AUTH_USERNAME"] == "platform-admin"


def test_no_secret_value_is_written_into_the_config_map() -> None:
    rendered = objects(render(VALUES["full-values"]))
    config = one(rendered, "ConfigMap")["data"]["targets.yaml"]
    for value in values_of("full-values")["targetSecrets"].values():
        assert value not in config
    assert "${TESTPOD_SECRET_MAIN_DB__PASSWORD}" in config
    chart_secret = one(rendered, "Secret", "-targets")
    assert base64.b64decode(chart_secret["data"]["cosmos-password"]).decode() == "not-a-real-password-but-long-enough"


def _secret_env(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Variable -> (Secret, key), from the projected volume of secret files the container mounts."""
    volume = next((v for v in spec["volumes"] if v["name"] == "target-secrets"), None)
    if volume is None:
        return {}
    mount = next(m for m in container(spec)["volumeMounts"] if m["name"] == "target-secrets")
    env = {e["name"]: e.get("value") for e in container(spec)["env"]}
    assert env["TESTPOD_TARGET_SECRETS_DIR"] == mount["mountPath"]
    assert not [e for e in container(spec)["env"] if "secretKeyRef" in e.get("valueFrom", {})], "secrets as files"
    return {
        item["path"]: (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def _file_fields(target: Target) -> list[str]:
    return [name for name, info in type(target).model_fields.items() if "FilePath" in repr(info.annotation)]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_the_rendered_config_loads_in_the_cli_with_the_env_the_chart_sets(values: Path, tmp_path: Path) -> None:
    """Chart and CLI agree: the ConfigMap parses with the variables the Deployment takes from its Secrets."""
    rendered = objects(render(values))
    secrets = {
        (d["metadata"]["name"], key): base64.b64decode(value).decode()
        for d in rendered
        if d["kind"] == "Secret"
        for key, value in d["data"].items()
    }
    spec = one(rendered, "Deployment")["spec"]["template"]["spec"]
    environ = {
        name: secrets.get(ref, f"value of {ref[0]}/{ref[1]}")  # an existing Secret's value stands in
        for name, ref in _secret_env(spec).items()
    }
    text = one(rendered, "ConfigMap")["data"]["targets.yaml"]

    # Files a target names (CA bundles) must be mounted into the pod; here a real file stands in for each.
    document = yaml.safe_load(text)
    mounts = [m["mountPath"] for m in container(spec)["volumeMounts"]]
    stand_in = tmp_path / "ca.pem"
    stand_in.write_text("-----BEGIN CERTIFICATE-----\n")
    for target in document["targets"]:
        for field in ("ca_file", "sslrootcert"):
            if field in target:
                assert any(target[field].startswith(m.rstrip("/") + "/") for m in mounts), target[field]
                target[field] = str(stand_in)

    targets = parse_targets(yaml.safe_dump(document), CONFIG_PATH, environ)
    given = values_of(values.stem).get("targets", [])
    assert [t.name for t in targets] == [t["name"] for t in given]
    for target, original in zip(targets, given, strict=True):
        for field, ref in original.get("secretRefs", {}).items():
            refs = {"": ref} if isinstance(ref.get("key"), str) else ref
            for one_ref in refs.values():
                expected = secrets.get(
                    (one_ref.get("name", f"{FULLNAME}-targets"), one_ref["key"]),
                    f"value of {one_ref.get('name')}/{one_ref['key']}",
                )
                assert expected in target.secrets(), f"{target.name}.{field}"
    # the helm test pod reads the same file with the same variables
    check = hook(rendered, "test")["spec"]
    assert _secret_env(check) == _secret_env(spec)
    assert {"name": "targets", "configMap": {"name": FULLNAME}} in check["volumes"]


def test_the_helm_test_hook_runs_the_check_command() -> None:
    rendered = objects(render(VALUES["hardened-values"]))
    pod = hook(rendered, "test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    main = container(pod["spec"])
    assert main["args"] == ["check", "--config", CONFIG_PATH, "--strict"]  # strict: true in these values
    mount = next(m for m in main["volumeMounts"] if m["name"] == "targets")
    assert mount["mountPath"] == CONFIG_PATH
    assert "--strict" not in container(hook(render(VALUES["minimal-values"]), "test")["spec"])["args"]


def test_checksums_roll_the_pod_when_targets_or_their_secrets_change() -> None:
    def checksums(*sets: str) -> dict[str, str]:
        deployment = one(template(VALUES["full-values"], sets=sets), "Deployment")
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        return {k: v for k, v in annotations.items() if k.startswith("checksum/")}

    base = checksums()
    assert set(base) == {"checksum/config", "checksum/secret"}
    assert checksums() == base  # stable, although the generated auth secret differs at every render
    assert checksums("targets[0].port=8443")["checksum/config"] != base["checksum/config"]
    changed = checksums("targetSecrets.cosmos-password=another-long-password")
    assert changed["checksum/secret"] != base["checksum/secret"]
    assert changed["checksum/config"] == base["checksum/config"]


def test_network_policy_opens_the_port_and_the_egress_the_values_ask_for() -> None:
    default = objects(render(VALUES["minimal-values"]))
    policy = one(default, "NetworkPolicy")["spec"]
    assert policy["egress"] == [{}]
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    # it selects both pods of the release
    for labels in (
        one(default, "Deployment")["spec"]["template"]["metadata"]["labels"],
        hook(default, "test")["metadata"]["labels"],
    ):
        assert policy["podSelector"]["matchLabels"].items() <= labels.items()

    hardened = one(render(VALUES["hardened-values"]), "NetworkPolicy")["spec"]
    assert hardened["ingress"][0]["from"] == values_of("hardened-values")["networkPolicy"]["ingressFrom"]
    assert {"port": 53, "protocol": "UDP"} in hardened["egress"][0]["ports"]
    assert hardened["egress"][1:] == values_of("hardened-values")["networkPolicy"]["egress"]
    assert not [d for d in objects(template(sets=("networkPolicy.enabled=false",))) if d["kind"] == "NetworkPolicy"]


def test_ingress_routes_to_the_service_port() -> None:
    rendered = objects(render(VALUES["hardened-values"]))
    ingress = one(rendered, "Ingress")["spec"]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    assert one(rendered, "Service")["spec"]["ports"][0]["name"] == "http"
    assert ingress["tls"] == [{"secretName": "readiness-tls", "hosts": ["readiness.platform.internal"]}]
    assert ingress["ingressClassName"] == "nginx"
    assert not [d for d in objects(render(VALUES["minimal-values"])) if d["kind"] == "Ingress"]


def render_notes(values: Path, tmp_path: Path) -> str:
    """NOTES.txt as `helm install` prints it: rendered through a wrapper template in a copy of the chart."""
    import shutil

    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    shutil.copy(copy / "templates" / "NOTES.txt", copy / "notes.txt")
    (copy / "templates" / "notes-render.yaml").write_text(
        'kind: Notes\ntext: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n'
    )
    result = run(
        [
            require("helm"),
            "template",
            RELEASE,
            str(copy),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            "1.29.0",
            "--values",
            str(values),
            "--show-only",
            "templates/notes-render.yaml",
        ]
    )
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["text"])


def test_notes_tell_how_to_open_sign_in_and_test(tmp_path: Path) -> None:
    notes = render_notes(VALUES["minimal-values"], tmp_path)
    assert f"kubectl --namespace {NAMESPACE} port-forward service/{FULLNAME} 8080:8080" in notes
    assert f"kubectl --namespace {NAMESPACE} get secret {FULLNAME}-auth -o jsonpath='{{.data.auth_password}}'" in notes
    assert f"helm test {RELEASE} --namespace {NAMESPACE} --logs" in notes
    secret = one(render(VALUES["minimal-values"]), "Secret", "-auth")
    assert secret["data"]["auth_password"] not in notes

    hardened = render_notes(VALUES["hardened-values"], tmp_path / "hardened")
    assert "https://readiness.platform.internal/" in hardened
    existing = render_notes(VALUES["existing-secret-values"], tmp_path / "existing")
    assert "get secret airia-test-pod-auth" in existing


def test_proxy_ca_bundle_and_registry_credentials_reach_both_pods() -> None:
    rendered = objects(render(VALUES["full-values"]))
    server = one(rendered, "Deployment")["spec"]["template"]["spec"]
    check = hook(rendered, "test")["spec"]
    for spec in (server, check):
        main = container(spec)
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://proxy.example.com:3128"
        assert env["NO_PROXY"] == env["no_proxy"] == ".svc,.cluster.local,198.51.100.0/24"
        assert env["TESTPOD_CA_BUNDLE"] == "/etc/airia-test-pod/ca/ca-bundle.pem"
        mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
        assert mounts["ca-bundle"] == "/etc/airia-test-pod/ca"
        assert mounts["registry-credentials"] == "/etc/airia-test-pod/registry"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["ca-bundle"]["configMap"] == {
            "name": "corporate-ca",
            "items": [{"key": "ca-bundle.crt", "path": "ca-bundle.pem"}],
        }
        assert volumes["registry-credentials"]["secret"]["secretName"] == "registry-pull"


def test_proxy_urls_with_credentials_come_from_a_secret() -> None:
    deployment = one(template(sets=("proxy.existingSecret=egress-proxy", "caBundle.secret=corp-ca")), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e for e in container(spec)["env"]}
    assert env["HTTPS_PROXY"]["valueFrom"]["secretKeyRef"] == {
        "name": "egress-proxy",
        "key": "HTTPS_PROXY",
        "optional": True,
    }
    assert env["http_proxy"]["valueFrom"]["secretKeyRef"]["key"] == "HTTP_PROXY"
    assert {v["name"]: v for v in spec["volumes"]}["ca-bundle"]["secret"]["secretName"] == "corp-ca"
    assert "caBundle" in render_error(sets=("caBundle.secret=a", "caBundle.configMap=b"))  # one source, not two


def test_continuous_readiness_values_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = objects(render(VALUES["full-values"]))
    claim = one(rendered, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "128Mi"
    deployment = one(rendered, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    secrets = [s["secret"]["name"] for s in volumes["auth"]["projected"]["sources"]]
    assert secrets[1] == "airia-test-pod-alerts"
    env = {e["name"]: e["value"] for e in container(spec)["env"] if "value" in e}
    mounts = {m["name"]: m["mountPath"] for m in container(spec)["volumeMounts"]}
    assert mounts["data"] == env["TESTPOD_DATA_DIR"] and mounts["auth"] == env["TESTPOD_SECRETS_DIR"]
    for name, value in env.items():
        if name.startswith("TESTPOD_") and name not in {"TESTPOD_CONFIG", "TESTPOD_SECRETS_DIR"}:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TESTPOD_SECRETS_DIR", "/nonexistent")
    settings = Settings()
    assert settings.schedule_seconds == 300 and settings.data_dir == Path("/var/lib/airia-test-pod")
    assert settings.alert_email_to == "platform-team@example.com, on-call@example.com"
    assert settings.dashboard_url == "https://airia-test-pod.example.com"

    minimal = objects(render(VALUES["minimal-values"]))
    assert not [d for d in minimal if d["kind"] == "PersistentVolumeClaim"]
    minimal_env = {e["name"] for e in container(one(minimal, "Deployment")["spec"]["template"]["spec"])["env"]}
    assert "TESTPOD_SCHEDULE_SECONDS" not in minimal_env and "TESTPOD_DATA_DIR" not in minimal_env


def test_the_app_validates_the_targets_before_anything_is_installed_or_replaced() -> None:
    rendered = objects(render(VALUES["full-values"]))
    config = hook(rendered, "pre-install", "ConfigMap")
    pod = hook(rendered, "pre-upgrade")
    assert _hook_annotations(pod)["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(_hook_annotations(config)["helm.sh/hook-weight"]) < int(_hook_annotations(pod)["helm.sh/hook-weight"])
    assert config["data"]["targets.yaml"] == one(rendered, "ConfigMap")["data"]["targets.yaml"]
    assert _hook_annotations(pod)["helm.sh/hook-output-log-policy"] == "hook-failed"  # helm prints the field
    main = container(pod["spec"])
    assert main["args"] == ["check", "--validate", "--config", CONFIG_PATH]
    # every ${VARIABLE} gets a placeholder: no Secret is read (the chart's own does not exist before install)
    variables = {e["name"] for e in main["env"]}
    assert variables == set(_secret_env(one(rendered, "Deployment")["spec"]["template"]["spec"]))
    assert "serviceAccountName" not in pod["spec"]  # the release's account does not exist before install


def test_uninstall_removes_the_helm_test_pod_through_a_pre_delete_hook_of_its_name() -> None:
    rendered = objects(render(VALUES["minimal-values"]))
    test_pod, cleanup = hook(rendered, "test"), hook(rendered, "pre-delete")
    assert cleanup["metadata"]["name"] == test_pod["metadata"]["name"]
    policy = _hook_annotations(cleanup)["helm.sh/hook-delete-policy"].split(",")
    assert {"before-hook-creation", "hook-succeeded", "hook-failed"} <= set(policy)
    assert container(cleanup["spec"])["args"] == ["--version"]


def _hook_annotations(document: dict[str, Any]) -> dict[str, str]:
    return dict(document["metadata"]["annotations"])


def test_rbac_and_the_token_only_come_with_targets_that_read_the_cluster(tmp_path: Path) -> None:
    plain = objects(render(VALUES["minimal-values"]))
    assert not [d for d in plain if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
    values = values_of("full-values")
    values["targets"].append({"name": "elsewhere", "kind": "storage", "namespace": "scratch"})
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    rendered = objects(render(tmp_path / "values.yaml"))
    reader = one(rendered, "ClusterRole")
    writes = {"create", "update", "patch", "delete", "deletecollection", "*"}
    for rule in reader["rules"]:  # read-only, except asking its own access reviews
        assert not writes & set(rule["verbs"]) or rule["resources"] == ["selfsubjectaccessreviews"], rule
    assert {r for rule in reader["rules"] for r in rule["resources"]} == {
        "nodes",
        "storageclasses",
        "ingressclasses",
        "selfsubjectaccessreviews",
    }
    roles = {d["metadata"]["namespace"]: d for d in rendered if d["kind"] == "Role"}
    assert set(roles) == {NAMESPACE, "scratch"}
    assert roles[NAMESPACE]["rules"][0]["resources"] == ["persistentvolumeclaims", "pods"]
    account = {
        "kind": "ServiceAccount",
        "name": one(rendered, "ServiceAccount")["metadata"]["name"],
        "namespace": NAMESPACE,
    }
    for binding in (d for d in rendered if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["subjects"] == [account]
    server = container(one(rendered, "Deployment")["spec"]["template"]["spec"])
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["TESTPOD_IMAGE"] == server["image"]  # the writer pod runs the product's own image
    assert {"name": "TESTPOD_IMAGE", "value": env["TESTPOD_IMAGE"]} in container(hook(rendered, "test")["spec"])["env"]
