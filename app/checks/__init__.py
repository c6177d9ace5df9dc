"""The kinds of check. This union is the only list of them: add a module, then one line here."""

from typing import Annotated

from pydantic import Field

from app.checks.anthropic import AnthropicTarget
from app.checks.azure_blob import AzureBlobTarget
from app.checks.bedrock import BedrockTarget
from app.checks.cassandra import CassandraTarget
from app.checks.dns import DnsTarget
from app.checks.document_intelligence import DocumentIntelligenceTarget
from app.checks.gemini import GeminiTarget
from app.checks.http import HttpTarget
from app.checks.mistral import MistralTarget
from app.checks.openai import OpenaiTarget
from app.checks.postgres import PostgresTarget
from app.checks.s3 import S3Target
from app.checks.tcp import TcpTarget
from app.checks.tls import TlsTarget

AnyTarget = Annotated[
    TcpTarget
    | PostgresTarget
    | DnsTarget
    | TlsTarget
    | HttpTarget
    | OpenaiTarget
    | CassandraTarget
    | AzureBlobTarget
    | S3Target
    | AnthropicTarget
    | BedrockTarget
    | GeminiTarget
    | MistralTarget
    | DocumentIntelligenceTarget,
    Field(discriminator="kind"),
]
