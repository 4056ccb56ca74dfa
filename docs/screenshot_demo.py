"""docs/demo_page.png: glow-demo's page in headless Chromium, every view in use.

    .venv/bin/python docs/screenshot_demo.py demo_out/saved_model docs/demo_page.png   # after `make demo`

Starts glow-demo on the model (tests/demo_process.py, a free port on 127.0.0.1), opens the page
in Debian's Chromium (tests/browser.py), moves the mix slider to 0.3 and one attribute slider
to 0.8 so that every view shows what its controls do, and saves the whole page.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from browser import headless_chromium, missing_browser, wait_until_ready  # noqa: E402
from demo_process import start_demo  # noqa: E402

MIX_ALPHA, ATTRIBUTE, ATTRIBUTE_ALPHA = 0.3, 3, 0.8
WIDTH = 1280


def set_slider(driver, css, value):
    """Sets a range input as a person's drag would end, firing its input event."""
    driver.execute_script("const s = document.querySelector(arguments[0]); s.value = arguments[1];"
                          "s.dispatchEvent(new Event('input'));", css, value)


def screenshot(model, out):
    with tempfile.TemporaryDirectory(prefix="screenshot_demo-") as directory:
        server = start_demo(["--model", model], directory, cwd=os.getcwd())  # the page names MODEL as given
        try:
            with headless_chromium(WIDTH) as driver:
                driver.get(server.url)
                wait_until_ready(driver)
                set_slider(driver, "#mix-alpha", MIX_ALPHA)
                wait_until_ready(driver)
                set_slider(driver, f"#attribute-sliders input[data-attribute='{ATTRIBUTE}']", ATTRIBUTE_ALPHA)
                wait_until_ready(driver)
                # The viewport as tall as the page, so that the screenshot holds all of it.
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                       {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})
                if not driver.save_screenshot(out):
                    raise RuntimeError(f"Chromium could not write {out}")
        finally:
            server.stop()


def main(argv):
    if len(argv) != 3:
        sys.exit(f"usage: {argv[0]} MODEL OUT.png  (MODEL: what glow-demo --model takes)")
    if missing_browser():
        sys.exit(missing_browser())
    screenshot(argv[1], os.path.abspath(argv[2]))
    print(f"wrote {argv[2]}")


if __name__ == "__main__":
    main(sys.argv)
