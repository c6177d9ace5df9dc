"""AI kinds: how soon a check against a stalled endpoint ends (result and thread), and a passing check's cost.

    python -m tests.benchmarks.bench_ai

Each kind is pointed at a local server that accepts and never answers, with a 2 s timeout: the figures are
when its result lands and when the thread that ran it has ended (no SDK still waiting or retrying). Then each
kind runs REPEATS times against its local provider server. Only loopback servers; every loop is bounded.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from typing import Any

from app.checks.anthropic import AnthropicTarget
from app.checks.base import Target
from app.checks.bedrock import BedrockTarget
from app.checks.document_intelligence import DocumentIntelligenceTarget
from app.checks.gemini import GeminiTarget
from app.checks.mistral import MistralTarget
from app.checks.openai import OpenaiTarget
from app.runner import check_target
from tests.checks import anthropic_server, bedrock_server, gemini_server, mistral_server, openai_server
from tests.checks import document_intelligence_server as di_server
from tests.servers import StallServer

TIMEOUT = 2.0
REPEATS = 10
BEDROCK_KEY, BEDROCK_SECRET = next(iter(bedrock_server.KEYS.items()))


def targets(url: str, bedrock: str, **common: Any) -> list[Target]:
    keys = {"access_key_id": BEDROCK_KEY, "secret_access_key": BEDROCK_SECRET}
    return [
        OpenaiTarget(name="openai", kind="openai", base_url=f"{url['openai']}/v1", api_key=openai_server.KEY,
                     model="gpt-test", embedding_model="embed-test", vision=True, **common),
        AnthropicTarget(name="anthropic", kind="anthropic", base_url=url["anthropic"], api_key=anthropic_server.KEY,
                        model="claude-test", vision=True, **common),
        BedrockTarget(name="bedrock", kind="bedrock", region=bedrock_server.REGION, endpoint_url=bedrock,
                      model=bedrock_server.CHAT, embedding_model=bedrock_server.TITAN, vision=True, **keys, **common),
        GeminiTarget(name="gemini", kind="gemini", base_url=url["gemini"], api_key=gemini_server.KEY,
                     model="gemini-test", embedding_model="embed-test", vision=True, **common),
        MistralTarget(name="mistral", kind="mistral", base_url=f"{url['mistral']}/v1", api_key=mistral_server.KEY,
                      model="pixtral-test", embedding_model="embed-test", vision=True, **common),
        DocumentIntelligenceTarget(name="docintel", kind="document_intelligence", endpoint=url["docintel"],
                                   api_key=di_server.KEY, **common),
    ]  # fmt: skip


def stalled() -> None:
    stall = StallServer()
    try:
        url = f"http://127.0.0.1:{stall.port}"
        for target in targets(dict.fromkeys(("openai", "anthropic", "gemini", "mistral", "docintel"), url), url,
                              timeout=TIMEOUT):  # fmt: skip
            start = time.perf_counter()
            result = asyncio.run(check_target(target))
            landed = time.perf_counter() - start
            thread = next((t for t in threading.enumerate() if t.name == f"check-{target.name}"), None)
            if thread is not None:
                thread.join(30)
            ended = time.perf_counter() - start
            print(
                f"stalled {target.kind:22} timeout {TIMEOUT:.1f} s: result after {landed:.2f} s "
                f"({result.status}, {result.stage}), thread ended after {ended:.2f} s"
            )
    finally:
        stall.close()


def passing() -> None:
    servers = {
        "openai": openai_server.OpenAiServer(),
        "anthropic": anthropic_server.AnthropicServer(),
        "gemini": gemini_server.GeminiServer(),
        "mistral": mistral_server.MistralServer(),
        "docintel": di_server.DocumentIntelligenceServer(),
    }
    servers["docintel"].running_polls = 0  # type: ignore[attr-defined]
    bedrock = bedrock_server.BedrockServer()
    try:
        for target in targets({k: s.url for k, s in servers.items()}, bedrock.url):
            times = []
            for _ in range(REPEATS):
                result = asyncio.run(check_target(target))
                assert result.status == "passed", result.cause
                times.append(result.duration_ms)
            print(
                f"passing {target.kind:22} median {statistics.median(times):7.1f} ms, "
                f"max {max(times):7.1f} ms over {REPEATS} runs (all calls, local server)"
            )
    finally:
        for server in [*servers.values(), bedrock]:
            server.close()


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    stalled()
    passing()
