"""cluster: the Kubernetes the platform is installed into — its version, the nodes it can schedule on (Ready,
in the node pool, without taints it does not tolerate), their allocatable CPU, memory, architectures and GPUs,
an IngressClass, and the permissions the platform's installer needs, each asked with a SelfSubjectAccessReview.

GPUs are counted from what the nodes advertise (the extended resources device plugins register), not from a
device in this pod: the platform is scheduled on those nodes, not here.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.checks.base import CheckFailed, Probe, Stage
from app.checks.kube import Api, KubeTarget, Quantity, open_api, quantity

POOL_LABELS = (  # the labels that name a node's pool on the common managed clusters and autoscalers
    "karpenter.sh/nodepool",
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "kubernetes.azure.com/agentpool",
    "agentpool",
    "node.kubernetes.io/instance-type",
)
GPU_RESOURCES = ["nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/*"]
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")

Name = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9*][A-Za-z0-9._/*-]*$")]


class Toleration(BaseModel):
    """A taint the platform's pods tolerate, as in a pod spec (key empty with Exists: every taint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""

    def tolerates(self, taint: dict[str, Any]) -> bool:
        if self.effect and self.effect != taint.get("effect"):
            return False
        if self.operator == "Exists":
            return not self.key or self.key == taint.get("key")
        return self.key == taint.get("key") and self.value == taint.get("value", "")


class Permission(BaseModel):
    """A permission the platform (or its installer) needs: verb on resource (of API group) in namespace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verb: Annotated[str, StringConstraints(pattern=r"^(\*|[a-z]+)$")]
    resource: Annotated[str, StringConstraints(pattern=r"^(\*|[a-z0-9.-]+(/[a-z]+)?)$")]  # "pods", "pods/log"
    group: Annotated[str, StringConstraints(pattern=r"^[a-z0-9.-]*$")] = ""  # "" is the core group; "apps" ...
    namespace: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]*$")] | None = None  # default: the pod's; "": all

    def __str__(self) -> str:
        group = f".{self.group}" if self.group else ""
        return f"{self.verb} {self.resource}{group}"


class ClusterTarget(KubeTarget):
    default_timeout: ClassVar[float] = 20.0

    kind: Literal["cluster"]
    min_version: Annotated[str, StringConstraints(pattern=r"^v?\d+\.\d+(\.\d+)?$")] | None = None  # "1.29"
    node_selector: dict[str, str] = Field(default_factory=dict)  # the platform's node pool, as labels
    tolerations: list[Toleration] = Field(default_factory=list)  # taints the platform's pods tolerate
    min_nodes: Annotated[int, Field(ge=0, le=10000)] = 1
    min_node_cpu: Annotated[str, Quantity] | None = None  # allocatable per node, e.g. "4" or "3500m"
    min_node_memory: Annotated[str, Quantity] | None = None  # allocatable per node, e.g. "16Gi"
    min_total_cpu: Annotated[str, Quantity] | None = None  # allocatable over the usable nodes
    min_total_memory: Annotated[str, Quantity] | None = None
    architectures: list[Literal["amd64", "arm64", "ppc64le", "s390x"]] = Field(default_factory=list)  # each present
    gpu_resources: list[Name] = Field(default_factory=lambda: list(GPU_RESOURCES))  # "*" matches any suffix
    min_gpus: Annotated[int, Field(ge=0, le=100000)] = 0
    ingress_class: Name | None = None  # an IngressClass that must exist
    default_ingress_class: bool = False  # a default IngressClass must exist
    permissions: list[Permission] = Field(default_factory=list)

    def check(self, probe: Probe) -> None:
        with open_api(probe, self) as api:
            version = api.version()
            probe.facts["kubernetes_version"] = version
            self._version(probe, version)
            self._permissions(probe, api)
            self._nodes(probe, api)
            if self.ingress_class or self.default_ingress_class:
                self._ingress_class(probe, api)

    def _version(self, probe: Probe, version: str) -> None:
        with probe.step("version", Stage.OPERATION):
            probe.note(version)
            if self.min_version is None:
                return
            found, wanted = _VERSION.match(version), _VERSION.match(self.min_version)
            assert wanted is not None  # the field's pattern
            have = tuple(int(part or 0) for part in found.groups()) if found else (0, 0, 0)
            if have < tuple(int(part or 0) for part in wanted.groups()):
                raise CheckFailed(
                    Stage.OPERATION,
                    f"Kubernetes {version} is older than {self.min_version}",
                    f"upgrade the cluster to {self.min_version} or later before installing the platform",
                )

    def _permissions(self, probe: Probe, api: Api) -> None:
        if not self.permissions:
            return
        with probe.step("permissions", Stage.PERMISSION):
            denied = []
            for permission in self.permissions:
                namespace = api.namespace if permission.namespace is None else permission.namespace
                resource, _, subresource = permission.resource.partition("/")
                if not api.allowed(permission.verb, resource, permission.group, namespace, subresource):
                    where = f"in namespace {namespace}" if namespace else "cluster-wide"
                    denied.append(f"{permission} {where}")
            if denied:
                raise CheckFailed(
                    Stage.PERMISSION,
                    "not allowed: " + "; ".join(denied),
                    "bind a Role (or ClusterRole) granting these to the identity the installer uses",
                )
            probe.note(f"{len(self.permissions)} allowed")

    def _nodes(self, probe: Probe, api: Api) -> None:
        with probe.step("nodes", Stage.OPERATION):
            params = {"labelSelector": ",".join(f"{k}={v}" for k, v in self.node_selector.items())}
            nodes = api.get("/api/v1/nodes", params if self.node_selector else None).get("items", [])
            usable, excluded = [], []
            for node in nodes:
                why = self._unusable(node)
                if why:
                    excluded.append(f"{_name(node)} ({why})")
                else:
                    usable.append(node)
            big_enough = [node for node in usable if not self._too_small(node)]
            probe.facts["nodes_total"] = len(nodes)
            probe.facts["nodes_usable"] = len(big_enough)
            cpu = sum(_allocatable(node, "cpu") for node in usable)
            memory = sum(_allocatable(node, "memory") for node in usable)
            probe.facts["allocatable_cpu"] = round(cpu, 2)
            probe.facts["allocatable_memory_gib"] = round(memory / 2**30, 2)
            arches = sorted({node.get("status", {}).get("nodeInfo", {}).get("architecture", "") for node in usable})
            probe.facts["architectures"] = ", ".join(a for a in arches if a)
            probe.note(
                f"{len(big_enough)} of {len(nodes)} usable" + (f"; excluded {', '.join(excluded)}" if excluded else "")
            )
            pool = f" matching {params['labelSelector']}" if self.node_selector else ""
            if len(big_enough) < self.min_nodes:
                small = [f"{_name(node)} ({self._too_small(node)})" for node in usable if self._too_small(node)]
                reasons = "; ".join(excluded + small) or "none exist"
                raise CheckFailed(
                    Stage.OPERATION,
                    f"{len(big_enough)} usable node(s){pool}, at least {self.min_nodes} needed: {reasons}",
                    "add nodes to the pool, fix NotReady nodes, or tolerate their taints in tolerations",
                )
            self._totals(cpu, memory, pool)
            missing = [arch for arch in self.architectures if arch not in arches]
            if missing:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"no usable node{pool} runs {', '.join(missing)} (found: {', '.join(arches) or 'none'})",
                    "add nodes of that architecture, or use images built for the architectures present",
                )
        self._gpus(probe, nodes, usable)

    def _unusable(self, node: dict[str, Any]) -> str:
        """Why the platform cannot be scheduled on a node, or ''."""
        conditions = {c.get("type"): c.get("status") for c in node.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") != "True":
            return "NotReady"
        if node.get("spec", {}).get("unschedulable"):
            return "cordoned"
        for taint in node.get("spec", {}).get("taints", []):
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not any(
                t.tolerates(taint) for t in self.tolerations
            ):
                value = f"={taint['value']}" if taint.get("value") else ""
                return f"taint {taint.get('key')}{value}:{taint.get('effect')} not tolerated"
        return ""

    def _too_small(self, node: dict[str, Any]) -> str:
        short = []
        if self.min_node_cpu and _allocatable(node, "cpu") < quantity(self.min_node_cpu):
            short.append(f"{_allocatable(node, 'cpu'):g} CPU < {self.min_node_cpu}")
        if self.min_node_memory and _allocatable(node, "memory") < quantity(self.min_node_memory):
            short.append(f"{_allocatable(node, 'memory') / 2**30:.1f} GiB < {self.min_node_memory}")
        return ", ".join(short)

    def _totals(self, cpu: float, memory: float, pool: str) -> None:
        if self.min_total_cpu and cpu < quantity(self.min_total_cpu):
            raise CheckFailed(
                Stage.OPERATION,
                f"the usable nodes{pool} have {cpu:g} allocatable CPU in all, {self.min_total_cpu} needed",
                "add nodes (or larger ones) to the pool",
            )
        if self.min_total_memory and memory < quantity(self.min_total_memory):
            raise CheckFailed(
                Stage.OPERATION,
                f"the usable nodes{pool} have {memory / 2**30:.1f} GiB allocatable memory in all, "
                f"{self.min_total_memory} needed",
                "add nodes (or larger ones) to the pool",
            )

    def _gpus(self, probe: Probe, nodes: list[dict[str, Any]], usable: list[dict[str, Any]]) -> None:
        if not self.min_gpus and not any(self._gpu_count(node) for node in nodes):
            return
        with probe.step("gpus", Stage.OPERATION):
            pools: dict[str, int] = {}
            for node in usable:
                if count := self._gpu_count(node):
                    pool = _pool(node)
                    pools[pool] = pools.get(pool, 0) + count
            total = sum(pools.values())
            probe.facts["gpus"] = total
            probe.facts["gpus_per_pool"] = ", ".join(f"{pool}: {count}" for pool, count in sorted(pools.items()))
            probe.note(f"{total} schedulable")
            if total < self.min_gpus:
                elsewhere = [
                    f"{_name(node)} has {self._gpu_count(node)} but is unusable ({self._unusable(node)})"
                    for node in nodes
                    if node not in usable and self._gpu_count(node)
                ]
                raise CheckFailed(
                    Stage.OPERATION,
                    f"{total} GPU(s) ({', '.join(self.gpu_resources)}) on usable nodes, at least {self.min_gpus} "
                    "needed" + (f": {'; '.join(elsewhere)}" if elsewhere else ""),
                    "tolerate the GPU nodes' taints in tolerations, or check the device plugin runs on every GPU "
                    "node (it advertises the GPUs in the node's allocatable resources)",
                )

    def _gpu_count(self, node: dict[str, Any]) -> int:
        allocatable = node.get("status", {}).get("allocatable", {})
        return sum(
            int(quantity(value))
            for resource, value in allocatable.items()
            if any(fnmatch.fnmatchcase(resource, pattern) for pattern in self.gpu_resources)
        )

    def _ingress_class(self, probe: Probe, api: Api) -> None:
        with probe.step("ingress class", Stage.OPERATION):
            classes = api.get("/apis/networking.k8s.io/v1/ingressclasses").get("items", [])
            names = [_name(c) for c in classes]
            defaults = [
                _name(c)
                for c in classes
                if c.get("metadata", {}).get("annotations", {}).get("ingressclass.kubernetes.io/is-default-class")
                == "true"
            ]
            probe.facts["ingress_classes"] = ", ".join(names)
            probe.note(", ".join(names) or "none")
            if self.ingress_class and self.ingress_class not in names:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"no IngressClass {self.ingress_class} (found: {', '.join(names) or 'none'})",
                    "install the ingress controller the platform uses, or set ingress_class to one of those",
                )
            if self.default_ingress_class and not defaults:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"no default IngressClass (found: {', '.join(names) or 'none'})",
                    'annotate one with ingressclass.kubernetes.io/is-default-class: "true"',
                )


def _name(item: dict[str, Any]) -> str:
    return str(item.get("metadata", {}).get("name", "?"))


def _allocatable(node: dict[str, Any], resource: str) -> float:
    return quantity(node.get("status", {}).get("allocatable", {}).get(resource, "0"))


def _pool(node: dict[str, Any]) -> str:
    labels = node.get("metadata", {}).get("labels", {})
    return next((labels[label] for label in POOL_LABELS if label in labels), _name(node))
