"""The server-rendered pages: one generic card per target, the empty state, a broken targets file."""

from __future__ import annotations

import re

from tests.servers import StallServer
from tests.web.helpers import MakeClient, login, tcp_target


def test_one_generic_card_per_target_in_config_order(make_client: MakeClient, stall: StallServer) -> None:
    targets = [
        tcp_target("zeta", stall.port, description="first in the file"),
        {"name": "alpha", "kind": "dns", "host": "localhost", "required": False},
        {"name": "mid", "kind": "http", "url": "http://127.0.0.1:1/"},
    ]
    client = make_client(targets)
    login(client)
    page = client.get("/").text
    assert re.findall(r'<article class="card" data-target="([^"]+)"', page) == ["zeta", "alpha", "mid"]
    cards = page.split('<article class="card"')[1:]
    fields = [sorted(re.findall(r'data-(?:field|row)="([^"]+)"', card)) for card in cards]
    assert all(each == fields[0] for each in fields)  # the same slots for every kind: no per-kind markup
    assert "optional" in cards[1] and "optional" not in cards[0]
    assert "first in the file" in cards[0]


def test_the_empty_state_explains_the_helm_values(make_client: MakeClient) -> None:
    client = make_client([])
    login(client)
    page = client.get("/").text
    assert "No targets are configured yet" in page
    assert "secretRefs:" in page and "helm upgrade --install" in page
    assert 'id="run-all"' not in page


def test_a_broken_targets_file_is_shown_escaped(make_client: MakeClient) -> None:
    client = make_client([{"name": "db", "kind": "tcp", "host": "127.0.0.1", "port": 5432, "<b>x</b>": 1}])
    login(client)
    page = client.get("/").text
    assert "The targets file is invalid" in page
    assert "targets[0].&lt;b&gt;x&lt;/b&gt;: unknown key (check its spelling)" in page
    assert "<b>x</b>" not in page
