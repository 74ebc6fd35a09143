"""Browser tests: Debian's chromium driven by Playwright's sync API against pytest-django's
`live_server`, in the spirit of Django's `AdminSeleniumTestCase` (a live server, explicit waits,
a login helper). Playwright never downloads a browser here; /usr/bin/chromium must exist
(`apt-get install chromium`), otherwise these tests are skipped with that hint."""

import os
import re

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 10_000  # explicit waits fail fast instead of hanging the run
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="package")
def browser() -> Browser:
    """One chromium for tests/browser, closed before any other package's tests run. `launch()`
    gives it a fresh temporary user-data-dir (Playwright creates and removes it).

    While Playwright's sync API is active the test thread has a running asyncio loop, and
    Django refuses ORM calls from such a thread; as Django's docs suggest for Playwright,
    DJANGO_ALLOW_ASYNC_UNSAFE lifts that — only for as long as the browser is up, so the rest of
    the suite keeps Django's check."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()


@pytest.fixture
def new_page(browser):
    """`new_page()` opens a page in its own browser context (own cookies: one person each)."""
    contexts: list[BrowserContext] = []

    def make() -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def login(live_server):
    """Log a user in the way a person does: open the admin, get sent to allauth's login page,
    type the username and password, submit, and land on the admin index."""

    def do_login(page: Page, user, password: str | None = None) -> Page:
        page.goto(f"{live_server.url}/admin/")
        expect(page).to_have_url(re.compile(re.escape(f"{live_server.url}/accounts/login/") + r"\?next="))
        page.locator("input[name=login]").fill(user.username)
        page.locator("input[name=password]").fill(password or f"pw-{user.username}")
        page.get_by_role("button", name="Sign In").click()
        expect(page).to_have_url(f"{live_server.url}/admin/")
        expect(page.locator("#user-tools")).to_contain_text(user.username, ignore_case=True)
        return page

    return do_login


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Each login checks a password in the live server; PBKDF2 costs ~0.5 s a time there and in
    `create_user`. The live server thread shares these settings, so MD5 makes the file ~30% faster."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
