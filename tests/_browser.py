"""Headless Chromium for the report's tests: the system browser (Debian's `chromium`) driven by
Playwright's Python package, which never downloads a browser of its own here (executable_path).

Without a browser the tests are skipped on a developer's machine, and fail in CI (the CI variable set),
so a CI image that lost the browser cannot pass silently.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> str:
    """The browser's path; skips (fails under CI) when Chromium or Playwright is missing."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (pip install -e '.[test]')")
    path = chromium_path()
    if path is None:
        missing.append("Chromium (apt-get install chromium)")
    if missing:
        message = "the report's browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install them", pytrace=False)
        pytest.skip(message)
    return path


@contextmanager
def chromium(profile: Path):
    """A fresh headless Chromium (its own profile folder); yields the browser context."""
    from playwright.sync_api import sync_playwright

    path = require_browser()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=path, headless=True, args=["--headless", *FLAGS],
            viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


LOAD_IMAGES = """async () => {
  const images = Array.from(document.images).filter(i => !i.closest('[hidden]'));
  for (const img of images) {
    img.scrollIntoView();
    if (!img.complete) {
      await new Promise(done => {
        img.addEventListener('load', done, {once: true});
        img.addEventListener('error', done, {once: true});
        setTimeout(done, 5000);
      });
    }
  }
  window.scrollTo(0, 0);
  return images.map(i => i.naturalWidth);
}"""


def loaded_widths(page) -> list[int]:
    """Scroll every visible image into view (they load lazily) and return their natural widths."""
    return page.evaluate(LOAD_IMAGES)
