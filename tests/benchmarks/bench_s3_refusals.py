"""How often a refused upload's answer is lost on the wire, and what the s3 check reports, against versitygw.

    python -m tests.benchmarks.bench_s3_refusals [TRIES]

For HTTP and HTTPS: a read-only user's PutObject of a scratch object's size sent by a plain boto3 client with
botocore's default checksums (a streamed body) and with `when_required` (a body with a length), counted by outcome;
then the s3 check as it is, and with the streamed body (its lost answers asked again without a body), counted by
stage and timed. Only loopback servers are used; every loop is bounded by TRIES. Prints figures, asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import time
from collections import Counter
from typing import Any

import app.checks.s3 as s3_kind
from app.runner import check_target
from tests.services import versitygw
from tests.services.s3 import S3Server


def raw_puts(server: S3Server, checksums: str, tries: int) -> Counter[str]:
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1}, request_checksum_calculation=checksums)
    payload = secrets.token_bytes(s3_kind.SCRATCH_BYTES)
    seen: Counter[str] = Counter()
    for attempt in range(tries):
        client = versitygw.client(server, "reader", config=config)
        try:
            client.put_object(Bucket=server.bucket, Key=f"bench/{attempt}", Body=payload)
            seen["stored"] += 1
        except Exception as error:  # counted by what the client saw
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            seen[code or type(error).__name__] += 1
        finally:
            client.close()
    return seen


async def checks(server: S3Server, tries: int) -> tuple[Counter[str], list[float]]:
    keys = server.keys["reader"]
    fields: dict[str, Any] = {"name": "bench", "kind": "s3", "bucket": server.bucket, "endpoint_url": server.endpoint}
    fields.update(access_key_id=keys.access_key_id, secret_access_key=keys.secret_access_key)
    if server.ca_file:
        fields["ca_file"] = server.ca_file
    seen: Counter[str] = Counter()
    durations = []
    for _ in range(tries):
        result = await check_target(s3_kind.S3Target.model_validate(fields))
        seen[f"{result.status}/{result.stage}"] += 1
        durations.append(result.duration_ms)
    return seen, durations


def main() -> None:
    tries = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    print(f"{tries} tries each; a read-only user's PutObject of {s3_kind.SCRATCH_BYTES // 1024} KiB")
    for tls in (False, True):
        with versitygw.started(tls=tls) as (server, _):
            scheme = "https" if tls else "http"
            for checksums in ("when_supported", "when_required"):
                print(f"{scheme:5} boto3, checksums {checksums:14}: {dict(raw_puts(server, checksums, tries))}")
            for checksums in ("when_required", "when_supported"):
                s3_kind.CHECKSUMS = checksums
                started = time.perf_counter()
                seen, durations = asyncio.run(checks(server, tries))
                elapsed = time.perf_counter() - started
                median, p95 = statistics.median(durations), statistics.quantiles(durations, n=20)[-1]
                print(
                    f"{scheme:5} check, checksums {checksums:14}: {dict(seen)}; median {median:.0f} ms, "
                    f"p95 {p95:.0f} ms per check, {elapsed:.1f} s in all"
                )
    s3_kind.CHECKSUMS = "when_required"


if __name__ == "__main__":
    main()
