"""Open a report in a real headless Chromium and record what it did: plots drawn, console errors, requests.

Used by the tests and by ``benchmarks/report_render.py``. Drives the system's Chromium (Debian's
``chromium`` package, ``/usr/bin/chromium``) through Playwright's Python package with
``executable_path``: Playwright's own browser download is never used (it cannot work offline).
Needs the ``test`` extra (playwright); ``unavailable_reason`` says why a browser cannot be had here.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Flags that let Chromium start headless on a closed network (no background connections, no sandbox as root).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def unavailable_reason() -> str | None:
    """None when a report can be opened in a browser here; else the one-line reason."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'the playwright package is missing: pip install -c .venv/torch-constraint.txt -e ".[test]"'
    if find_chromium() is None:
        return "no chromium on PATH: apt-get install chromium (make test installs it when run as root)"
    return None


@dataclass
class OpenedReport:
    """A report loaded in the browser; ``page`` is Playwright's page for further checks."""

    page: Any
    url: str
    load_s: float  # from navigation to every open plot drawn
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def plots_rendered(self) -> int:
        return int(self.page.evaluate("document.body.dataset.plotsRendered || '0'"))

    @property
    def last_draw_ms(self) -> float | None:
        """When the page drew its last plot, in ms after navigation started (the browser's own clock)."""
        value = self.page.evaluate("document.body.dataset.lastDrawMs || ''")
        return float(value) if value else None

    @property
    def outside_requests(self) -> list[str]:
        """Requests for anything but the report file itself (data: and blob: URLs stay in the page)."""
        return [url for url in self.requests if url != self.url and not url.startswith(("data:", "blob:"))]


class ReportBrowser:
    """One headless Chromium; ``open`` loads a report file and waits until its open plots are drawn."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def open(self, path: str | Path, timeout_s: float = 60.0, width: int = 1400, height: int = 1000) -> OpenedReport:
        page = self._browser.new_page(viewport={"width": width, "height": height})
        url = Path(path).resolve().as_uri()
        opened = OpenedReport(page=page, url=url, load_s=0.0)
        page.on("console", lambda message: opened.console_errors.append(message.text)
                if message.type == "error" else None)  # fmt: skip
        page.on("pageerror", lambda error: opened.page_errors.append(str(error)))
        page.on("request", lambda request: opened.requests.append(request.url))

        def on_dialog(dialog: Any) -> None:
            opened.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        started = time.perf_counter()
        page.goto(url, wait_until="load", timeout=timeout_s * 1000)
        self.wait_for_plots(page, timeout_s)
        opened.load_s = time.perf_counter() - started
        return opened

    @staticmethod
    def wait_for_plots(page: Any, timeout_s: float = 60.0) -> None:
        """Until the page script ran and drew every figure whose <details> are all open (and not filtered out)."""
        page.wait_for_function(
            """() => {
                if (document.body.dataset.scriptDone !== '1') return false;
                const blocks = Array.from(document.querySelectorAll('script.tb-figure'));
                const visible = blocks.filter(b => {
                    if (document.getElementById(b.dataset.target).closest('[hidden]')) return false;
                    let d = document.getElementById(b.dataset.target).closest('details');
                    while (d) { if (!d.open) return false; d = d.parentElement.closest('details'); } return true; });
                const drawn = Number(document.body.dataset.plotsRendered || '0');
                const failed = Number(document.body.dataset.plotsFailed || '0');
                return drawn + failed >= visible.length;
            }""",
            timeout=timeout_s * 1000,
        )


@contextmanager
def report_browser() -> Iterator[ReportBrowser]:
    """A headless Chromium for reports, or ``RuntimeError`` with ``unavailable_reason``."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True, args=list(CHROMIUM_FLAGS))
        try:
            yield ReportBrowser(browser)
        finally:
            browser.close()
