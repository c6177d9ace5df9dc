"""Data-store figures: each kind passing against its local server, all of them at once, and all of them stalled.

    python -m tests.benchmarks.bench_datastores

Each kind contributes a section: a context manager that starts its server (tests/services) and yields
a passing target. Only loopback servers are used; every loop is bounded. Prints figures, asserts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from app.checks.azure_blob import AzureBlobTarget
from app.checks.base import Target
from app.checks.cassandra import CassandraTarget
from app.checks.postgres import PostgresTarget
from app.checks.s3 import S3Target
from app.runner import check_target, run_targets
from tests.servers import stall_server
from tests.services import azurite, cassandra, postgres, s3

REPEATS = 5
STALL_TIMEOUT = 2.0


@contextmanager
def postgres_section() -> Iterator[Callable[..., Target]]:
    with contextmanager(postgres.local_server)(tls=True) as server:

        def make(**fields: Any) -> Target:
            values = {
                "name": "postgres",
                "kind": "postgres",
                "host": "localhost",
                "port": server.port,
                "database": postgres.APP_DATABASE,
                "user": postgres.APP_USER,
                "password": server.user_password,
                "sslmode": "verify-full",
                "sslrootcert": server.ca_file,
                "extensions": ["pg_trgm"],
            }
            return PostgresTarget.model_validate({**values, **fields})

        yield make


@contextmanager
def s3_section() -> Iterator[Callable[..., Target]]:
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # the credential chain never asks a metadata endpoint
    with contextmanager(s3.local_server)(tls=False) as server:
        keys = server.keys["admin"]

        def make(**fields: Any) -> Target:
            values = {
                "name": "s3",
                "kind": "s3",
                "bucket": server.bucket,
                "endpoint_url": server.endpoint,
                "access_key_id": keys.access_key_id,
                "secret_access_key": keys.secret_access_key,
            }
            return S3Target.model_validate({**values, **fields})

        yield make


@contextmanager
def cassandra_section() -> Iterator[Callable[..., Target]]:
    with contextmanager(cassandra.local_server)() as server:
        print(f"cassandra node started in {server.started_in:.1f} s")

        def make(**fields: Any) -> Target:
            values = {
                "name": "cassandra",
                "kind": "cassandra",
                "contact_points": [server.host],
                "port": server.port,
                "username": cassandra.APP_USER,
                "password": server.user_password,
                "keyspace": cassandra.APP_KEYSPACE,
                "min_replication": 1,
            }
            if "host" in fields:  # a stall server: one contact point
                fields = {"contact_points": [fields.pop("host")], **fields}
            return CassandraTarget.model_validate({**values, **fields})

        yield make


@contextmanager
def azure_blob_section() -> Iterator[Callable[..., Target]]:
    with contextmanager(azurite.local_server)(https=False) as server:
        container = "bench"
        with contextlib.suppress(Exception):
            server.service().create_container(container)

        def make(**fields: Any) -> Target:
            values = {
                "name": "azure-blob",
                "kind": "azure_blob",
                "connection_string": server.connection_string,
                "container": container,
            }
            if "host" in fields:
                port = fields.pop("port")
                fields.pop("host")
                values = {**values, "connection_string": server.connection_string.replace(str(server.port), str(port))}
            return AzureBlobTarget.model_validate({**values, **fields})

        yield make


SECTIONS = {
    "postgres": postgres_section,
    "s3": s3_section,
    "cassandra": cassandra_section,
    "azure_blob": azure_blob_section,
}


def stalled_endpoint(kind: str, port: int) -> dict[str, Any]:
    """The fields that point a kind's target at a stall server."""
    if kind == "s3":
        return {"endpoint_url": f"http://127.0.0.1:{port}"}
    return {"host": "127.0.0.1", "port": port}


def main() -> None:
    with ExitStack() as stack:
        started = time.perf_counter()
        makers = {kind: stack.enter_context(section()) for kind, section in SECTIONS.items()}
        print(f"servers started in {time.perf_counter() - started:.1f} s: {', '.join(makers)}")

        for kind, make in makers.items():
            target = make()
            first = asyncio.run(check_target(target))  # pays the lazy SDK import
            times = [asyncio.run(check_target(target)).duration_ms for _ in range(REPEATS)]
            print(
                f"{kind}: passing check {statistics.median(times):.0f} ms median, {max(times):.0f} ms max "
                f"over {REPEATS} runs (first run, with SDK import: {first.duration_ms:.0f} ms, {first.status})"
            )

        start = time.perf_counter()
        run = asyncio.run(run_targets([make() for make in makers.values()]))
        wall = time.perf_counter() - start
        per_kind = ", ".join(f"{r.kind} {r.duration_ms:.0f} ms ({r.status})" for r in run.results)
        print(f"all kinds at once: wall {wall * 1000:.0f} ms; {per_kind}")

        stalls = {kind: stack.enter_context(stall_server()) for kind in makers}
        stalled = [
            make(timeout=STALL_TIMEOUT, **stalled_endpoint(kind, stalls[kind].port)) for kind, make in makers.items()
        ]
        start = time.perf_counter()
        run = asyncio.run(run_targets(stalled))
        wall = time.perf_counter() - start
        stages = ", ".join(f"{r.kind} at {r.stage}" for r in run.results)
        print(
            f"all kinds stalled, timeout {STALL_TIMEOUT:g} s: wall {wall:.3f} s; all failed: "
            f"{run.counts.failed == len(stalled)}; {stages}"
        )


if __name__ == "__main__":
    main()
