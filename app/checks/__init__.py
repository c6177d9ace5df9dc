"""The registry of kinds: the only list of them. Config, the chart schema, the dashboard and the tests derive theirs
from it at call time. Adding a kind: write its module, then add its target model to KINDS."""

from __future__ import annotations

from typing import Annotated, Any, Union, get_args

from pydantic import Field

from app.checks.anthropic import AnthropicTarget
from app.checks.azure_blob import AzureBlobTarget
from app.checks.base import Target
from app.checks.bedrock import BedrockTarget
from app.checks.cassandra import CassandraTarget
from app.checks.cluster import ClusterTarget
from app.checks.dns import DnsTarget
from app.checks.document_intelligence import DocumentIntelligenceTarget
from app.checks.gemini import GeminiTarget
from app.checks.http import HttpTarget
from app.checks.mistral import MistralTarget
from app.checks.openai import OpenaiTarget
from app.checks.postgres import PostgresTarget
from app.checks.proxy import ProxyTarget
from app.checks.registry import RegistryTarget
from app.checks.s3 import S3Target
from app.checks.storage import StorageTarget
from app.checks.tcp import TcpTarget
from app.checks.tls import TlsTarget

KINDS: tuple[type[Target], ...] = (
    TcpTarget,
    PostgresTarget,
    DnsTarget,
    TlsTarget,
    HttpTarget,
    OpenaiTarget,
    CassandraTarget,
    AzureBlobTarget,
    S3Target,
    AnthropicTarget,
    BedrockTarget,
    GeminiTarget,
    MistralTarget,
    DocumentIntelligenceTarget,
    ProxyTarget,
    RegistryTarget,
    ClusterTarget,
    StorageTarget,
)


def kind_of(model: type[Target]) -> str:
    """The `kind:` value a target model accepts (its `kind: Literal[...]` field)."""
    return str(get_args(model.model_fields["kind"].annotation)[0])


def kind_models() -> dict[str, type[Target]]:
    """Every kind by name, in the registry's order."""
    return {kind_of(model): model for model in KINDS}


def any_target(kinds: tuple[type[Target], ...] | None = None) -> Any:
    """The discriminated union of every registered kind (or of `kinds`), for a pydantic field or TypeAdapter."""
    return Annotated[Union[kinds or KINDS], Field(discriminator="kind")]  # noqa: UP007 - a tuple of types needs Union[...]
