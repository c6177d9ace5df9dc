"""Checks run inside a network namespace of their own, against a DNS server the test controls.

Inside the namespace there is only a loopback interface, and /etc/resolv.conf, /etc/hosts and /etc/nsswitch.conf
are bind mounts that only this namespace sees; a DNS server on 127.0.0.1:53 answers from ZONE. So NXDOMAIN,
SERVFAIL, empty answers and a server that never answers are real outcomes of the pod's resolver path, and no
query can leave the machine: the namespace has no route anywhere but loopback.

    run_in_sandbox(targets, workdir) -> list[Result]   # from a test
    python -m tests.checks.dns_sandbox                  # what runs inside: targets (JSON) in, results (JSON) out
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from app.results import Result

ZONE: dict[str, dict[str, list[str]]] = {
    "pair.test.": {"A": ["127.0.0.10", "127.0.0.11"], "AAAA": ["::1"]},
    "v4only.test.": {"A": ["127.0.0.12"]},
    "empty.test.": {},  # the name exists but has no address records
}
SOA = "ns.test. admin.test. 1 3600 600 86400 60"
SERVFAIL = {"broken.test."}
SILENT = {"silent.test."}  # queries for it are never answered
HOSTS = "127.0.0.1 localhost\n::1 localhost\n127.0.0.1 hosts-only.test\n"
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"  # no nss-resolve or mDNS: only the two files above
REPO = Path(__file__).resolve().parents[2]
SANDBOX_COVERAGE = "TESTPOD_SANDBOX_COVERAGE"


def run_in_sandbox(targets: list[dict[str, Any]], workdir: Path) -> list[Result]:
    """Check `targets` in a fresh network + mount namespace; raises RuntimeError when one cannot be made."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("unshare (util-linux) is not installed")
    (workdir / "resolv.conf").write_text(RESOLV_CONF)
    (workdir / "hosts").write_text(HOSTS)
    (workdir / "nsswitch.conf").write_text(NSSWITCH)
    # without root, a user namespace maps us to root inside it (where the kernel allows that)
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    # a running nscd would answer from outside the namespace through its socket: hide it
    script = (
        'for f in resolv.conf hosts nsswitch.conf; do mount --bind "$1/$f" "/etc/$f" || exit 1; done; '
        'if [ -d /run/nscd ]; then mount -t tmpfs tmpfs /run/nscd || exit 1; fi; exec "$2" "$3"'
    )
    command = [unshare, *user, "--mount", "--net", "sh", "-c", script, "sh", str(workdir), sys.executable, __file__]
    env = {**os.environ, "PYTHONPATH": str(REPO), SANDBOX_COVERAGE: _coverage_settings()}
    done = subprocess.run(
        command, check=False, input=json.dumps(targets), capture_output=True, text=True, timeout=60, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"the sandbox failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return TypeAdapter(list[Result]).validate_json(done.stdout)


def _coverage_settings() -> str:
    """How the test run measures coverage, so the checks run in the sandbox count too ('' when it does not)."""
    import coverage

    active = coverage.Coverage.current()
    if active is None:
        return ""
    config = active.config
    return json.dumps({"data_file": config.data_file, "branch": config.branch, "source": config.source})


def _loopback_up() -> None:
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))


def _serve_dns(sock: socket.socket) -> None:
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rrset

    while True:
        data, client = sock.recvfrom(4096)
        query = dns.message.from_wire(data)
        question = query.question[0]
        name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        if name in SILENT:
            continue
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA | dns.flags.RA  # glibc takes an empty answer without them for a lame referral
        if name in SERVFAIL:
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif ZONE.get(name, {}).get(rdtype):
            reply.answer.append(dns.rrset.from_text_list(name, 60, "IN", rdtype, ZONE[name][rdtype]))
        else:  # as an authoritative server does: NXDOMAIN or an empty answer, with the zone's SOA
            reply.set_rcode(dns.rcode.NOERROR if name in ZONE else dns.rcode.NXDOMAIN)
            reply.authority.append(dns.rrset.from_text("test.", 60, "IN", "SOA", SOA))
        sock.sendto(reply.to_wire(), client)


def _main() -> None:
    import dns.rdatatype  # noqa: F401 - loaded before the server thread needs it

    from app.checks import any_target
    from app.runner import run_targets

    _loopback_up()
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 53))
    threading.Thread(target=_serve_dns, args=(server,), daemon=True).start()
    targets = TypeAdapter(list[any_target()]).validate_python(json.load(sys.stdin))
    measure = None
    if os.environ.get(SANDBOX_COVERAGE):
        import coverage

        # written next to the test run's own data file, which pytest-cov combines at the end
        measure = coverage.Coverage(data_suffix=True, **json.loads(os.environ[SANDBOX_COVERAGE]))
        measure.start()
    run = asyncio.run(run_targets(targets))
    if measure is not None:
        measure.stop()
        measure.save()
    sys.stdout.write(TypeAdapter(list[Result]).dump_json(run.results).decode())


if __name__ == "__main__":
    _main()
