"""storage: the cluster's StorageClass really provisions — a claim binds, and a pod writes to the volume, syncs,
reads it back and compares, as the platform's databases will.

The claim and a short-lived, hardened writer pod are created in the pod's namespace (a WaitForFirstConsumer class
binds once the pod is scheduled), then deleted whatever happens, with a few seconds beyond the deadline to do so.
Both carry labels naming the target, so a run that was killed mid-way has its leftovers removed by the next one.
The writer runs Python (the product's own image by default, which the nodes pull anyway) and reports its timings
or the errno it met through its termination message, so no log access is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints, model_validator

from app.checks.base import CLEAN_UP_GRACE, CheckFailed, Probe, Stage
from app.checks.kube import Api, KubeTarget, Quantity, open_api, quantity, unexpected
from app.sanitization import clean_remote_text

SCRATCH_PREFIX = "airia-scratch-"
MANAGED_BY = "app.kubernetes.io/managed-by=airia-test-pod"
TARGET_LABEL = "airia-test-pod/target"
IMAGE_ENV = "TESTPOD_IMAGE"  # the chart sets it to the product's own image
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
SELECTED_NODE = "volume.kubernetes.io/selected-node"  # set by the scheduler on a WaitForFirstConsumer claim
UID = 10001  # the product image's user
POLL = 0.5  # seconds between looks at the claim and the pod
DIAGNOSIS = 1.5  # seconds kept before the deadline to read events and say why something is stuck
MOUNT = "/scratch"
TERMINATION_LOG = "/dev/termination-log"  # what the kubelet shows as the container's termination message

# Runs in the writer pod: write `size` bytes, fsync, drop them from the page cache, read back, compare digests;
# report to the termination log. Arguments: size, directory, termination log.
WRITER = r"""
import errno, hashlib, json, os, sys, time
size, path, block = int(sys.argv[1]), sys.argv[2] + "/airia-test-pod.bin", os.urandom(1 << 20)
def report(code, **fields):
    with open(sys.argv[3], "w") as log:
        json.dump(fields, log)
    sys.exit(code)
step = "write"
try:
    written, started = hashlib.sha256(), time.perf_counter()
    with open(path, "wb", buffering=0) as out:
        left = size
        while left:
            view = memoryview(block)[: min(left, len(block))]
            while view:
                done = out.write(view)
                written.update(view[:done])
                view, left = view[done:], left - done
        os.fsync(out.fileno())
    write_s, step = time.perf_counter() - started, "read"
    read, count = hashlib.sha256(), 0
    with open(path, "rb", buffering=0) as back:
        os.posix_fadvise(back.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        started = time.perf_counter()
        while chunk := back.read(1 << 20):
            read.update(chunk)
            count += len(chunk)
    read_s, step = time.perf_counter() - started, "delete"
    os.unlink(path)
except OSError as error:
    report(1, step=step, errno=errno.errorcode.get(error.errno or 0, str(error.errno)), error=error.strerror)
report(0 if count == size and read.digest() == written.digest() else 2, bytes=size, read_bytes=count,
       same=read.digest() == written.digest(), write_s=write_s, read_s=read_s)
"""

_ERRNO = {  # what the writer met → cause, remediation
    "EROFS": ("the volume is mounted read-only", "check the class's mount options and the PersistentVolume's"),
    "ENOSPC": ("the volume is full", "the provisioned volume is smaller than asked: check the provisioner"),
    "EDQUOT": ("the volume's quota is exhausted", "check the storage backend's quota for this volume"),
    "EACCES": (
        f"the volume is not writable by UID {UID}",
        "the provisioner ignores fsGroup: set fsGroupPolicy on its CSIDriver, or use a class that honours it",
    ),
    "EPERM": (
        f"the volume is not writable by UID {UID}",
        "the provisioner ignores fsGroup: set fsGroupPolicy on its CSIDriver, or use a class that honours it",
    ),
    "EIO": ("the volume returned an I/O error", "check the storage backend and the node's kernel log"),
}
_IMAGE_PROBLEMS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")


class StorageTarget(KubeTarget):
    default_timeout: ClassVar[float] = 120.0

    kind: Literal["storage"]
    storage_class: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")] | None = (
        None  # default: the cluster's default StorageClass
    )
    size: Annotated[str, Quantity] = "1Gi"
    access_mode: Literal["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"] = "ReadWriteOnce"
    write_bytes: Annotated[int, Field(ge=1, le=2**30)] = 16 * 2**20
    namespace: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")] | None = (
        None  # default: the pod's own namespace
    )
    image: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^\S+$")] | None = (
        None  # an image with python3; default: the product's own image
    )
    node_selector: dict[str, str] = Field(default_factory=dict)  # where the writer pod may run

    @model_validator(mode="after")
    def _fits(self) -> StorageTarget:
        if self.write_bytes > quantity(self.size):
            raise ValueError(f"write_bytes ({self.write_bytes}) must fit in size ({self.size})")
        return self

    def check(self, probe: Probe) -> None:
        with open_api(probe, self) as api:
            probe.facts["kubernetes_version"] = api.version()
            namespace = self.namespace or api.namespace
            self._permissions(probe, api, namespace)
            storage_class = self._storage_class(probe, api)
            self._remove_leftovers(probe, api, namespace)
            name = SCRATCH_PREFIX + secrets.token_hex(4)
            created: list[str] = []
            try:
                created.append(self._claim(probe, api, namespace, name, storage_class))
                created.insert(0, self._writer(probe, api, namespace, name))  # deleted before its claim
                self._bound(probe, api, namespace, name, storage_class)
                self._written(probe, api, namespace, name)
            finally:
                self._delete(probe, api, namespace, created)

    def _labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/managed-by": "airia-test-pod", TARGET_LABEL: self.name}

    def _permissions(self, probe: Probe, api: Api, namespace: str) -> None:
        with probe.step("permissions", Stage.PERMISSION):
            needed = [
                (verb, resource, namespace)
                for resource in ("persistentvolumeclaims", "pods")
                for verb in ("create", "get", "list", "delete")
            ] + [("list", "events", namespace)]
            denied = [f"{verb} {resource}" for verb, resource, ns in needed if not api.allowed(verb, resource, "", ns)]
            if not api.allowed("list", "storageclasses", "storage.k8s.io"):
                denied.append("list storageclasses.storage.k8s.io (cluster-wide)")
            if denied:
                raise CheckFailed(
                    Stage.PERMISSION,
                    f"not allowed in namespace {namespace}: " + "; ".join(denied),
                    "install the chart with this target configured (it creates the Role and ClusterRole), or grant "
                    "these to the pod's service account",
                )
            probe.note(f"claims and pods in {namespace}")

    def _storage_class(self, probe: Probe, api: Api) -> str:
        with probe.step("storage class", Stage.OPERATION):
            classes = api.get("/apis/storage.k8s.io/v1/storageclasses").get("items", [])
            by_name = {item["metadata"]["name"]: item for item in classes}
            defaults = sorted(
                n for n, c in by_name.items() if c["metadata"].get("annotations", {}).get(DEFAULT_CLASS) == "true"
            )
            probe.facts["default_storage_classes"] = ", ".join(defaults)
            if self.storage_class is None and not defaults:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"the cluster has no default StorageClass (classes: {', '.join(sorted(by_name)) or 'none'})",
                    f'mark one as default ({DEFAULT_CLASS}: "true") or name one in storage_class',
                )
            name = self.storage_class or defaults[-1]
            if name not in by_name:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"no StorageClass {name} (classes: {', '.join(sorted(by_name)) or 'none'})",
                    "create it (install its CSI driver), or set storage_class to one of those",
                )
            if not defaults:
                probe.warn(
                    Stage.OPERATION,
                    "the cluster has no default StorageClass: claims that name no class stay Pending",
                    f'mark {name} as default ({DEFAULT_CLASS}: "true")',
                )
            elif len(defaults) > 1:
                probe.warn(
                    Stage.OPERATION,
                    f"several default StorageClasses ({', '.join(defaults)}): the newest one wins, which may not be "
                    "the one intended",
                    "keep the default annotation on one class only",
                )
            chosen = by_name[name]
            probe.facts.update(
                {
                    "storage_class": name,
                    "provisioner": chosen.get("provisioner", ""),
                    "reclaim_policy": chosen.get("reclaimPolicy", "Delete"),
                    "binding_mode": chosen.get("volumeBindingMode", "Immediate"),
                    "allow_expansion": bool(chosen.get("allowVolumeExpansion", False)),
                }
            )
            probe.note(f"{name}: {chosen.get('provisioner')}, {probe.facts['binding_mode']}")
            return name

    def _remove_leftovers(self, probe: Probe, api: Api, namespace: str) -> None:
        """Scratch objects of this target older than a run can last: a run was killed before it cleaned up."""
        with probe.step("leftovers", Stage.OPERATION):
            oldest = time.time() - self.effective_timeout - CLEAN_UP_GRACE
            selector = {"labelSelector": f"{MANAGED_BY},{TARGET_LABEL}={self.name}"}
            removed = []
            for resource in ("pods", "persistentvolumeclaims"):
                path = f"/api/v1/namespaces/{namespace}/{resource}"
                for item in api.get(path, selector).get("items", []):
                    created = datetime.fromisoformat(item["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
                    if created.astimezone(UTC).timestamp() < oldest and not item["metadata"].get("deletionTimestamp"):
                        self._delete_one(api, f"{path}/{item['metadata']['name']}", probe.remaining())
                        removed.append(f"{resource[:-1]} {item['metadata']['name']}")
            probe.facts["leftovers_removed"] = len(removed)
            probe.note(f"removed {', '.join(removed)}" if removed else "none")

    def _claim(self, probe: Probe, api: Api, namespace: str, name: str, storage_class: str) -> str:
        with probe.step("claim", Stage.OPERATION):
            claim = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "labels": self._labels()},
                "spec": {
                    "accessModes": [self.access_mode],
                    "resources": {"requests": {"storage": self.size}},
                    "storageClassName": storage_class,
                    "volumeMode": "Filesystem",
                },
            }
            path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
            status, body = api.call("POST", path, body=claim, refusals=False)
            if status == 403:  # the permission step proved RBAC allows it: admission refused it (a quota, a policy)
                raise CheckFailed(
                    Stage.OPERATION,
                    f"the claim for {self.size} was refused: {clean_remote_text(str(body.get('message')), 300)}",
                    f"a ResourceQuota (or admission policy) in namespace {namespace} refuses it: raise the quota's "
                    "requests.storage / persistentvolumeclaims, or lower size",
                )
            if status != 201:
                raise unexpected(status, f"creating claim {name}", body)
            probe.note(f"{name}: {self.size} {self.access_mode}")
            return f"{path}/{name}"

    def _writer(self, probe: Probe, api: Api, namespace: str, name: str) -> str:
        with probe.step("writer pod", Stage.OPERATION):
            image = self.image or os.environ.get(IMAGE_ENV)
            if not image:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"no image for the writer pod (image is unset and so is {IMAGE_ENV})",
                    "set image: to an image with python3 the nodes can pull (the chart sets the product's own)",
                )
            path = f"/api/v1/namespaces/{namespace}/pods"
            status, body = api.call("POST", path, body=self._pod(name, image, probe.remaining()), refusals=False)
            if status == 403:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"the writer pod was refused: {clean_remote_text(str(body.get('message')), 300)}",
                    f"a ResourceQuota, LimitRange or Pod Security level in namespace {namespace} refuses it",
                )
            if status != 201:
                raise unexpected(status, f"creating pod {name}", body)
            probe.note(image)
            return f"{path}/{name}"

    def _pod(self, name: str, image: str, remaining: float) -> dict[str, Any]:
        hardened = {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": self._labels()},
            "spec": {
                "restartPolicy": "Never",
                "activeDeadlineSeconds": int(remaining) + 1,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": 0,
                "nodeSelector": self.node_selector,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": UID,
                    "runAsGroup": UID,
                    "fsGroup": UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "writer",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python3", "-c", WRITER, str(self.write_bytes), MOUNT, TERMINATION_LOG],
                        "securityContext": hardened,
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "64Mi"},
                            "limits": {"cpu": "1", "memory": "128Mi"},
                        },
                        "terminationMessagePolicy": "File",
                        "volumeMounts": [{"name": "scratch", "mountPath": MOUNT}],
                    }
                ],
                "volumes": [{"name": "scratch", "persistentVolumeClaim": {"claimName": name}}],
            },
        }

    def _bound(self, probe: Probe, api: Api, namespace: str, name: str, storage_class: str) -> None:
        with probe.step("bind", Stage.OPERATION):
            path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
            started = time.monotonic()
            while True:
                claim = api.get(path)
                if claim.get("status", {}).get("phase") == "Bound":
                    probe.facts["bind_ms"] = round((time.monotonic() - started) * 1000)
                    probe.note(f"{claim['spec'].get('volumeName')} in {probe.facts['bind_ms']} ms")
                    return
                if probe.remaining(floor=0) < DIAGNOSIS + POLL:
                    break
                time.sleep(POLL)
            pending = f"{time.monotonic() - started:.0f} s"
            events = api.events(namespace, "PersistentVolumeClaim", name)
            failed = [e for e in events if e.startswith("ProvisioningFailed")]
            provisioner = probe.facts.get("provisioner")
            if failed:
                hint = (
                    f"the class may not support {self.access_mode}: try ReadWriteOnce or a class that does"
                    if self.access_mode != "ReadWriteOnce"
                    else f"see the provisioner {provisioner}'s log; check size and the class's parameters"
                )
                raise CheckFailed(Stage.OPERATION, f"provisioning failed for class {storage_class}: {failed[-1]}", hint)
            # a WaitForFirstConsumer claim is provisioned only once the scheduler has placed its pod on a node
            placed = SELECTED_NODE in claim.get("metadata", {}).get("annotations", {})
            if probe.facts.get("binding_mode") == "WaitForFirstConsumer" and not placed:
                unscheduled = self._unscheduled(api, namespace, name)
                if unscheduled:
                    raise unscheduled
            raise CheckFailed(
                Stage.OPERATION,
                f"no provisioner answered: the claim is still Pending after {pending}"
                + (f"; events: {' | '.join(events[-3:])}" if events else "; no events"),
                f"check that the provisioner {provisioner} of class {storage_class} (its CSI driver or controller) "
                "runs and is healthy",
            )

    def _unscheduled(self, api: Api, namespace: str, name: str) -> CheckFailed | None:
        """The writer pod could not be placed (its scheduler events say why), or its image cannot be pulled."""
        pod = api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        for status in pod.get("status", {}).get("containerStatuses", []):
            reason = status.get("state", {}).get("waiting", {}).get("reason", "")
            if reason in _IMAGE_PROBLEMS:
                message = clean_remote_text(status["state"]["waiting"].get("message", ""), 300)
                return CheckFailed(
                    Stage.OPERATION,
                    f"the writer image {status.get('image')} cannot be pulled ({reason}): {message}",
                    "set image: to an image with python3 that the nodes can pull (a registry they reach)",
                )
        conditions = pod.get("status", {}).get("conditions", [])
        if any(c.get("type") == "PodScheduled" and c.get("status") == "False" for c in conditions):
            events = [e for e in api.events(namespace, "Pod", name) if e.startswith("FailedScheduling")]
            why = (
                events[-1] if events else next(c.get("message", "") for c in conditions if c["type"] == "PodScheduled")
            )
            return CheckFailed(
                Stage.OPERATION,
                f"the writer pod was not scheduled: {clean_remote_text(why, 300)}",
                "the volume's pod fits no node: check node_selector, taints, free capacity and the volume's "
                "topology (zone) against the nodes",
            )
        return None

    def _written(self, probe: Probe, api: Api, namespace: str, name: str) -> None:
        with probe.step("write and read", Stage.OPERATION):
            path = f"/api/v1/namespaces/{namespace}/pods/{name}"
            while True:
                pod = api.get(path)
                phase = pod.get("status", {}).get("phase")
                if phase in ("Succeeded", "Failed"):
                    break
                if probe.remaining(floor=0) < DIAGNOSIS + POLL:
                    stuck = self._unscheduled(api, namespace, name)
                    raise stuck or CheckFailed(
                        Stage.OPERATION,
                        f"the writer pod did not finish in time (phase {phase})",
                        "the volume is slow or the node busy: raise timeout, or lower write_bytes",
                    )
                time.sleep(POLL)
            terminated = next(
                (s.get("state", {}).get("terminated") for s in pod["status"].get("containerStatuses", [])), None
            )
            report = _report((terminated or {}).get("message", ""))
            failure = _writer_failure(report, (terminated or {}).get("reason", phase or ""))
            if failure:
                raise failure
            size = int(report["bytes"])
            for direction in ("write", "read"):
                seconds = max(float(report[f"{direction}_s"]), 1e-6)
                probe.facts[f"{direction}_ms"] = round(seconds * 1000, 2)
                probe.facts[f"{direction}_mib_s"] = round(size / 2**20 / seconds, 2)
            probe.facts["written_bytes"] = size
            probe.note(
                f"{size // 1024} KiB written with fsync at {probe.facts['write_mib_s']} MiB/s, read back at "
                f"{probe.facts['read_mib_s']} MiB/s, identical"
            )

    def _delete(self, probe: Probe, api: Api, namespace: str, paths: list[str]) -> None:
        """Remove the pod, then its claim; the check's own failure is what gets reported."""
        for path in paths:
            with contextlib.suppress(CheckFailed):
                self._delete_one(api, path, max(probe.remaining(), CLEAN_UP_GRACE))

    @staticmethod
    def _delete_one(api: Api, path: str, timeout: float) -> None:
        api.call("DELETE", path, params={"gracePeriodSeconds": "0"}, timeout=timeout)


def _report(message: str) -> dict[str, Any]:
    try:
        report = json.loads(message)
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


def _writer_failure(report: dict[str, Any], reason: str) -> CheckFailed | None:
    """What the writer's termination message says went wrong, or None when it wrote, read and compared."""
    if "errno" in report:
        code = str(report["errno"])
        cause, remediation = _ERRNO.get(code, ("the writer failed", "check the volume's mount and the storage backend"))
        detail = clean_remote_text(str(report.get("error", "")), 100)
        return CheckFailed(Stage.OPERATION, f"{report.get('step')}: {cause} ({code}: {detail})", remediation)
    if not {"bytes", "write_s", "read_s"} <= report.keys():
        return CheckFailed(
            Stage.OPERATION,
            f"the writer pod ended without a report ({clean_remote_text(reason, 100) or 'no reason given'})",
            "the image must run python3 as a non-root user (the product's own image does); check the pod's node",
        )
    if not report.get("same") or report.get("read_bytes") != report["bytes"]:
        return CheckFailed(
            Stage.OPERATION,
            f"the data read back differs from what was written ({report.get('read_bytes')} of {report['bytes']} "
            "bytes, different content)",
            "the volume loses or corrupts data: check the storage backend before the platform stores anything",
        )
    return None
