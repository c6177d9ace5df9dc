"""The kinds of check. This union is the only list of them: add a module, then one line here."""

from typing import Annotated

from pydantic import Field

from app.checks.postgres import PostgresTarget
from app.checks.tcp import TcpTarget

AnyTarget = Annotated[
    TcpTarget | PostgresTarget,
    Field(discriminator="kind"),
]
