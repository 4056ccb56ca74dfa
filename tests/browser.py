"""Headless Chromium driven by Selenium, for tests/test_demo_browser.py and docs/screenshot_demo.py.

The browser and its driver are Debian's packages (chromium, chromium-driver; `make test` installs
them as root on Debian, as it does Open MPI): Selenium is given both paths, so it downloads
nothing. Without background networking, component updates and sync, Chromium makes no
connection of its own (a closed network refuses them, slowly).
"""
import contextlib
import shutil
import tempfile

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")
READY_TIMEOUT = 120  # seconds the page may take to answer everything asked of it (a loaded 2-core machine)


def missing_browser():
    """Why the browser tests cannot run here, or '' when they can."""
    missing = [package for package, path in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER)) if not path]
    if not missing:
        return ""
    return (f"{' and '.join(missing)} not installed: Debian's packages (apt-get install chromium chromium-driver; "
            "make test does so as root on Debian)")


@contextlib.contextmanager
def headless_chromium(width=1280, height=1000):
    """A Selenium Chrome driver of Debian's Chromium, headless, in a new empty profile removed after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def wait_until_ready(driver):
    """Waits until the demo page has answered every request it made (its status line says 'ready')."""
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, READY_TIMEOUT).until(lambda d: d.find_element("id", "status").text == "ready",
                                               "the page was still working after READY_TIMEOUT seconds")
