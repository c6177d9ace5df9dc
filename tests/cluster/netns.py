"""The node's network namespace and the sink its default route leads into, and a way to act inside the node.

`inside_node()` moves only the calling thread into the node's namespace (setns(2) is per thread) and back, so a
test can open sockets to the node's servers and port-forwards while every other thread stays where it was. A
socket keeps the namespace it was created in.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cluster.layout import NODE_IP, NODE_NETNS, NODE_PREFIX, SINK_IP, SINK_NETNS

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def path(name: str = NODE_NETNS) -> Path:
    return NETNS_DIR / name


def exists(name: str = NODE_NETNS) -> bool:
    return path(name).exists()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _sysctl(namespace: str, *settings: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", namespace, "sysctl", "-qw", *settings],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )


def create() -> None:
    """Node and sink joined by a veth pair; the sink forwards nothing."""
    _ip("netns", "add", NODE_NETNS)
    _ip("netns", "add", SINK_NETNS)
    for namespace in (NODE_NETNS, SINK_NETNS):
        _ip("-n", namespace, "link", "set", "lo", "up")
    # the veth is created inside the node namespace, so no interface ever appears in the machine's own
    _ip("-n", NODE_NETNS, "link", "add", "eth0", "type", "veth", "peer", "name", "sink0", "netns", SINK_NETNS)
    _ip("-n", NODE_NETNS, "addr", "add", f"{NODE_IP}/{NODE_PREFIX}", "dev", "eth0")
    _ip("-n", SINK_NETNS, "addr", "add", f"{SINK_IP}/{NODE_PREFIX}", "dev", "sink0")
    _ip("-n", NODE_NETNS, "link", "set", "eth0", "up")
    _ip("-n", SINK_NETNS, "link", "set", "sink0", "up")
    _ip("-n", NODE_NETNS, "route", "add", "default", "via", SINK_IP)
    _sysctl(SINK_NETNS, "net.ipv4.ip_forward=0")
    # the node routes between its bridge and its own addresses, and kube-proxy needs bridged traffic in iptables
    _sysctl(NODE_NETNS, "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1")


def delete() -> None:
    for namespace in (NODE_NETNS, SINK_NETNS):
        if exists(namespace):
            subprocess.run(["ip", "netns", "delete", namespace], check=False, capture_output=True, timeout=30)


def command(args: list[str], name: str = NODE_NETNS) -> list[str]:
    """`args` run inside the namespace (nsenter execs, so the PID stays the command's own)."""
    return ["nsenter", f"--net={path(name)}", "--", *args]


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextmanager
def inside_node(name: str = NODE_NETNS) -> Iterator[None]:
    """Run the body with this thread in the node's network namespace."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(path(name), os.O_RDONLY)
    try:
        _setns(there)
        try:
            yield
        finally:
            _setns(here)
    finally:
        os.close(here)
        os.close(there)
