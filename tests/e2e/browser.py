"""Headless Chromium for the end-to-end page tests: Debian's `chromium` driven by Playwright.

Playwright's own browser download cannot work here (and must never run): the browser is the
system one, through `executable_path`. Missing pieces fail the test with what to install — a
silent skip would let a broken page pass.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
SCREENSHOTS = PROJECT_DIR / ".local" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_HINT = ("the browser tests need Debian's chromium, a Chinese font and the pinned playwright package: "
                "`apt-get install -y chromium fonts-wqy-microhei` (as root; `make test` does it where it can) "
                "and `.venv/bin/python -m pip install -r requirements-dev.txt`")


def chromium_path() -> str:
    found = os.environ.get("KAURI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("no chromium on PATH: " + INSTALL_HINT, pytrace=False)
    return found


def require_chinese_font() -> None:
    """Without a CJK font Chinese pages render as empty boxes: every zh-CN screenshot would be wrong."""
    import subprocess

    fc_list = shutil.which("fc-list")
    out = subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True, text=True,
                         timeout=30).stdout if fc_list else ""
    if not out.strip():
        pytest.fail("no Chinese font for chromium: " + INSTALL_HINT, pytrace=False)


@pytest.fixture(scope="module")
def browser():
    """One browser per test module (each test opens its own context)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: " + INSTALL_HINT, pytrace=False)
    path = chromium_path()
    require_chinese_font()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


class Shots:
    """A screenshot per step, named `<flow>-<n>-<step>.png`, under .local/screenshots/."""

    def __init__(self, flow: str):
        self.flow = flow
        self.n = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob(f"{flow}-*.png"):
            old.unlink()

    def __call__(self, page, step: str, full_page: bool = True) -> Path:
        self.n += 1
        path = SCREENSHOTS / f"{self.flow}-{self.n}-{step}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path


def loopback_only(context, stubs: dict[str, str] | None = None) -> list[str]:
    """Nothing leaves this machine: requests to any other host are answered here (a stub page standing in
    for the wallet app) or refused; the URLs are returned for the test to check."""
    stubs = stubs or {}
    seen: list[str] = []

    def handle(route):
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if host in ("127.0.0.1", "localhost") or url.startswith(("data:", "about:")):
            route.continue_()
            return
        seen.append(url)
        body = stubs.get(host)
        if body is None:
            route.abort()
        else:
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=body)

    context.route("**/*", handle)
    return seen
