"""Names of the facts more than one module sets or reads (checks, metrics, reports). A fact only one kind knows
is named in that kind's module."""

# where a check went
ADDRESSES = "addresses"  # every address the host resolved to
CONNECTED_TO = "connected_to"  # address:port of the connection that was made
ENDPOINT = "endpoint"  # scheme://host[:port] of an HTTP(S) service
PROXY = "proxy"  # the HTTP(S) proxy requests went through

# the TLS session and the certificate
TLS_VERSION = "tls_version"  # "TLSv1.3"; "none" when a kind that may speak TLS did not
TLS_CIPHER = "tls_cipher"
SUBJECT = "subject"
ISSUER = "issuer"
NAMES = "names"  # the certificate's subject alternative names
NOT_BEFORE = "not_before"  # ISO 8601
NOT_AFTER = "not_after"  # ISO 8601, so a gauge of the time left stays current between runs
DAYS_TO_EXPIRY = "days_to_expiry"

# timings
LATENCY_MS = "latency_ms"

# the credentials a check signed with (the AWS kinds): "explicit", or the method of the pod's chain that found them
CREDENTIALS = "credentials"

# AI calls: each call (chat, vision, embedding) names its own facts; format with call=...
CALL_LATENCY_MS = "{call}_latency_ms"
CALL_MODEL = "{call}_model"  # the model as the provider reports it
CALL_PROMPT_TOKENS = "{call}_prompt_tokens"
CALL_COMPLETION_TOKENS = "{call}_completion_tokens"
EMBEDDING_DIMENSIONS = "embedding_dimensions"
EMBEDDING_TOKENS = "embedding_tokens"
