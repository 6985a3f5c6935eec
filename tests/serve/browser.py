"""Headless Chromium for the browser tier: Debian's chromium and chromedriver
(``scripts/install-browser.sh``), driven by Selenium with both paths given, so that Selenium
Manager never looks for or downloads a browser or a driver."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("TAGSMITH_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TAGSMITH_CHROMEDRIVER", "/usr/bin/chromedriver"))


def chromium() -> Any:
    """A headless Chromium session (1280x900). Fails, never skips, without the browser: the
    browser tier is part of CI, which installs it."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise AssertionError(
            f"the browser tier needs Debian's chromium and chromedriver ({', '.join(missing)} missing): "
            "run scripts/install-browser.sh"
        )
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: no network, no downloads
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver
