"""The browser the web page's end-to-end test drives: Debian's ``chromium``, headless.

Playwright's own browser download (``playwright install``) fetches from a CDN at run time, which
this project never does; Debian's package comes through apt like ``redis-server``. A Korean font
comes with it: Debian's chromium pulls in no CJK font, and without one the page's Korean text
renders as boxes in the test's screenshots.
"""

from __future__ import annotations

from pathlib import Path

from deploy.install import Log, apt_install, ensure_debian_tool

CHROMIUM = "/usr/bin/chromium"
KOREAN_FONT_PACKAGE = "fonts-nanum"
KOREAN_FONT_DIR = Path("/usr/share/fonts/truetype/nanum")
# what the test launches chromium with: no sandbox (CI containers run as root), and nothing that
# phones home (updates, sync, background requests), so every request it makes is the page's
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def ensure_chromium(log: Log = print) -> str:
    """The path of Debian's chromium, with it and a Korean font installed by apt if missing."""
    path = ensure_debian_tool("chromium", "chromium", log)
    if not KOREAN_FONT_DIR.is_dir():
        apt_install(KOREAN_FONT_PACKAGE, log)
    return path
