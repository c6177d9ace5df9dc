"""The dashboard in Debian's Chromium: log in, run, read a failure, download the report, stay inert under
hostile text from targets and remote servers, fit a laptop and a phone; create and revoke a gate token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect, sync_playwright

from app import __version__
from tests.certs import Certificates
from tests.checks.http_server import HttpServer, Reply, Request
from tests.servers import ClosedPort
from tests.web.helpers import PASSWORD, SECRET_KEY, USERNAME, BlackholePort, ServerProcess, write_targets

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
# each payload sets a marker if it ever runs; none may
SCRIPT = "<script>window.__xss = 'script'</script>"
IMAGE = "<img src=x onerror=\"window.__xss = 'img'\">"
SVG = '<svg onload="alert(1)"></svg>'
HOSTILE = f"{SCRIPT} {IMAGE} {SVG}"


def hostile_server(request: Request) -> Reply:
    return Reply(502, f"upstream said: {HOSTILE}".encode(), {"Content-Type": f"text/html; x={IMAGE}"})


@dataclass
class Dashboard:
    url: str
    closed_port: int


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    directory = tmp_path_factory.mktemp("browser")
    certificates = Certificates(directory / "certs", organisation=f"Evil {IMAGE}")
    closed = ClosedPort()
    blackhole = BlackholePort()
    with (
        HttpServer(hostile_server) as web,
        HttpServer(lambda r: Reply(200), cert=certificates.leaf("soon", days=(-1, 5))) as tls,
    ):
        targets = [
            {"name": "closed", "kind": "tcp", "host": "127.0.0.1", "port": closed.port, "description": HOSTILE},
            {"name": "hung", "kind": "tcp", "host": "127.0.0.1", "port": blackhole.port, "timeout": 2},
            {"name": "upstream", "kind": "http", "url": f"{web.url}/status", "description": "remote body " + SVG},
            {
                "name": "cert",
                "kind": "tls",
                "host": "127.0.0.1",
                "port": tls.port,
                "ca_file": str(certificates.ca_file),
                "server_name": "localhost",
            },
        ]
        env = {
            "TESTPOD_CONFIG": str(write_targets(directory, targets)),
            "TESTPOD_AUTH_PASSWORD": PASSWORD,
            "TESTPOD_SECRET_KEY": SECRET_KEY,
            "TESTPOD_RUN_ON_START": "false",
        }
        server = ServerProcess(env=env, log_path=directory / "server.log")
        server.start()
        try:
            yield Dashboard(server.url, closed.port)
        finally:
            server.stop()
            blackhole.close()
            closed.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@dataclass
class Watch:
    """What a page did that it must not: open dialogs, throw, log errors (a CSP violation is one)."""

    dialogs: list[str]
    errors: list[str]


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, Watch]]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    tab = context.new_page()
    watch = Watch([], [])

    def on_dialog(dialog: Dialog) -> None:
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        # a 404 from /api/results before the first run is an answer, not an error of the page
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            watch.errors.append(message.text)

    tab.on("dialog", on_dialog)
    tab.on("console", on_console)
    tab.on("pageerror", lambda error: watch.errors.append(str(error)))
    yield tab, watch
    context.close()


def log_in(page: Page, url: str) -> None:
    page.goto(f"{url}/")
    expect(page).to_have_url(f"{url}/login")
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/")


def fits_without_scrolling_sideways(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_log_in_run_all_read_a_failure_and_download_the_report(
    dashboard: Dashboard, page: tuple[Page, Watch], tmp_path: Path
) -> None:
    tab, watch = page
    log_in(tab, dashboard.url)
    title = tab.locator('[data-field="title"]')
    expect(title).to_have_text("No run yet")

    tab.click("#run-all")
    expect(title).to_contain_text("Running…")
    expect(tab.locator('.card[data-target="hung"] [data-field="status"]')).to_have_text("running…")
    expect(tab.locator("#run-all")).to_be_disabled()
    expect(title).to_have_text("Not ready", timeout=15_000)
    expect(tab.locator('[data-field="when"]')).to_contain_text("Last run")

    closed = tab.locator('.card[data-target="closed"]')
    expect(closed.locator('[data-field="status"]')).to_have_text("failed")
    expect(closed.locator('[data-field="stage"]')).to_have_text("connect")
    expect(closed.locator('[data-field="cause"]')).to_contain_text("Connection refused")
    expect(closed.locator('[data-field="remediation"]')).to_contain_text(
        f"nothing listens on port {dashboard.closed_port}"
    )
    closed.locator("summary", has_text="Steps").click()
    expect(closed.locator('[data-field="steps"] tr')).to_have_count(2)
    expect(tab.locator('.card[data-target="hung"] [data-field="stage"]')).to_have_text("connect")
    expect(tab.locator('.card[data-target="cert"] [data-field="status"]')).to_have_text("warning")

    with tab.expect_download() as download:
        tab.click("a:has-text('HTML')")
    saved = tmp_path / "report.html"
    download.value.save_as(saved)
    report = saved.read_text(encoding="utf-8")
    assert "NOT READY" in report
    assert f"nothing listens on port {dashboard.closed_port}" in report
    assert download.value.suggested_filename.startswith("airia-test-pod-report-")

    assert watch.dialogs == []
    assert watch.errors == []


def test_hostile_text_is_shown_as_text_and_never_runs(dashboard: Dashboard, page: tuple[Page, Watch]) -> None:
    tab, watch = page
    log_in(tab, dashboard.url)
    tab.click("#run-all")
    expect(tab.locator('[data-field="title"]')).to_have_text("Not ready", timeout=15_000)
    upstream = tab.locator('.card[data-target="upstream"]')
    expect(upstream.locator('[data-field="cause"]')).to_contain_text("upstream said: <script>")
    for card in ("upstream", "cert"):
        tab.locator(f'.card[data-target="{card}"] summary', has_text="Facts").click()
    expect(upstream.locator('[data-field="facts"]')).to_contain_text("<img src=x onerror=")
    expect(tab.locator('.card[data-target="cert"] [data-field="facts"]')).to_contain_text("Evil")
    expect(tab.locator('.card[data-target="closed"] .description')).to_have_text(HOSTILE)

    assert tab.evaluate("window.__xss") is None
    assert tab.locator("main img, main svg, main iframe").count() == 0
    assert [s.get_attribute("src") for s in tab.locator("script").all()] == [
        f"/static/app.js?v={__version__}",
        f"/static/history.js?v={__version__}",
    ]
    assert watch.dialogs == []
    assert watch.errors == []


def test_history_strip_and_the_target_page(dashboard: Dashboard, page: tuple[Page, Watch]) -> None:
    tab, watch = page
    log_in(tab, dashboard.url)
    tab.click("#run-all")
    expect(tab.locator('[data-field="title"]')).to_have_text("Not ready", timeout=15_000)
    closed = tab.locator('.card[data-target="closed"]')
    last = closed.locator(".strip .tick").last
    expect(last).to_have_class(re.compile(r"\bfailed\b"))
    expect(last).to_have_attribute("title", re.compile(r"failed at connect \(.*Connection refused"))
    last.click()
    expect(closed.locator('[data-field="strip-detail"]')).to_contain_text("failed at connect")
    expect(closed.locator('[data-field="changed"]')).to_contain_text("failing since")
    expect(tab.locator('.card[data-target="cert"] .strip .tick').last).to_have_class(re.compile(r"\bwarning\b"))

    closed.locator("a", has_text="history").click()
    expect(tab).to_have_url(f"{dashboard.url}/targets/closed")
    expect(tab.locator("#runs tbody tr").first).to_contain_text("Connection refused")
    expect(tab.locator("#target-summary .description")).to_have_text(HOSTILE)
    expect(tab.locator("#target-summary")).to_contain_text("Failing since")
    assert tab.evaluate("window.__xss") is None
    assert watch.dialogs == []
    assert watch.errors == []


def test_run_one_target_and_log_out(dashboard: Dashboard, page: tuple[Page, Watch]) -> None:
    tab, _ = page
    log_in(tab, dashboard.url)
    tab.locator('.card[data-target="closed"] .run-one').click()
    summary = tab.locator('[data-field="summary"]')
    expect(summary).to_contain_text("this run checked only 1 of 4 targets", timeout=10_000)
    expect(tab.locator('.card[data-target="upstream"] [data-field="status"]')).to_have_text("not in this run")
    expect(tab.locator('.card[data-target="closed"] [data-field="status"]')).to_have_text("failed")
    tab.click("button:has-text('Log out')")
    expect(tab).to_have_url(f"{dashboard.url}/login")
    tab.goto(f"{dashboard.url}/")
    expect(tab).to_have_url(f"{dashboard.url}/login")


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_the_dashboard_fits_a_laptop_and_a_phone(
    dashboard: Dashboard, page: tuple[Page, Watch], width: int, height: int
) -> None:
    tab, _ = page
    tab.set_viewport_size({"width": width, "height": height})
    log_in(tab, dashboard.url)
    tab.click("#run-all")
    expect(tab.locator('[data-field="title"]')).to_have_text(re.compile("ready", re.IGNORECASE), timeout=15_000)
    for details in tab.locator("summary").all():
        details.click()
    assert fits_without_scrolling_sideways(tab)
    lefts = {round(box["x"]) for card in tab.locator(".card").all() if (box := card.bounding_box())}
    assert (len(lefts) == 1) is (width < 500)  # one column on a phone, several on a laptop


def test_the_login_page_fits_a_phone(dashboard: Dashboard, page: tuple[Page, Watch]) -> None:
    tab, _ = page
    tab.set_viewport_size({"width": 360, "height": 640})
    tab.goto(f"{dashboard.url}/login")
    assert fits_without_scrolling_sideways(tab)
    tab.fill("#username", USERNAME)
    tab.fill("#password", "wrong-password-0")
    tab.click("button[type=submit]")
    expect(tab.locator(".alert")).to_have_text("Incorrect username or password.")


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (360, 740)])
def test_gate_tokens_page_creates_shows_once_and_revokes(
    dashboard: Dashboard, page: tuple[Page, Watch], tmp_path: Path, width: int, height: int
) -> None:
    tab, watch = page
    tab.set_viewport_size({"width": width, "height": height})
    log_in(tab, dashboard.url)
    tab.get_by_role("navigation", name="Main").get_by_role("link", name="Gate tokens").click()
    expect(tab).to_have_url(f"{dashboard.url}/gate-tokens")
    name = f"ci at {width}px"
    tab.get_by_label("Name").fill(name)
    tab.get_by_role("button", name="Create token").click()
    secret_field = tab.locator("#new-token")
    secret = secret_field.input_value()
    assert secret.startswith("tpgate_")
    expect(tab.locator("#gate-curl")).to_contain_text(f"{dashboard.url}/api/readiness-gate?wait=60")
    tab.get_by_role("button", name="Copy token").click()
    expect(tab.locator("[data-copied]")).to_have_text(re.compile(r"^(Copied|Selected)"))
    assert fits_without_scrolling_sideways(tab)
    tab.screenshot(path=str(tmp_path / "gate-tokens.png"), full_page=True)
    gate = httpx.get(f"{dashboard.url}/api/readiness-gate", headers={"Authorization": f"Bearer {secret}"})
    assert gate.status_code in (200, 503) and "ready" in gate.json()  # the gate's answer, not a 401

    tab.goto(f"{dashboard.url}/gate-tokens")  # a new visit: the token is never shown again
    expect(tab.locator("#new-token")).to_have_count(0)
    assert secret not in tab.content()
    row = tab.locator("#tokens tr", has_text=name)
    row.get_by_role("button", name=f"Revoke the gate token {name}").click()
    expect(tab.get_by_role("status").first).to_contain_text(f"Revoked the gate token “{name}”")
    expect(tab.locator("#tokens tr", has_text=name)).to_have_count(0)
    refused = httpx.get(f"{dashboard.url}/api/readiness-gate", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    assert watch.dialogs == []
    assert watch.errors == []
