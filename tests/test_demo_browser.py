"""glow-demo's page in a real browser (headless Chromium, tests/browser.py) over the tiny trained
model of the demo_server fixture: what a person does on it, and what they see."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from browser import headless_chromium, missing_browser, wait_until_ready

pytest.importorskip("selenium", reason="selenium not installed (requirements.txt pins it: make venv)")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

MISSING = missing_browser()
pytestmark = [pytest.mark.skipif(bool(MISSING), reason=MISSING),
              pytest.mark.xdist_group("demo_server")]  # the demo_server fixture, built once
WAIT = 120  # seconds for what the page shows after an action (a loaded 2-core machine)


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


@pytest.fixture
def page(browser, demo_server):
    """The page freshly loaded, every request of its first showing answered."""
    browser.get(demo_server.url)
    wait_until_ready(browser)
    return browser


def element(page, element_id):
    return page.find_element("id", element_id)


def sources(page, css):
    return [image.get_attribute("src") for image in page.find_elements("css selector", css)]


def pixels(data_url):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


def wait_for(page, condition, message):
    return WebDriverWait(page, WAIT).until(lambda _: condition(), message)


def test_the_page_loads_with_every_view_filled(page):
    assert "class-conditional (10 classes)" in element(page, "model-description").text
    assert len(sources(page, "#sample-grid img")) == 10
    for image in ("encode-input", "encode-output", "mix-a", "mix-output", "mix-b", "manipulate-input",
                  "manipulate-output"):
        assert element(page, image).get_attribute("src").startswith("data:image/png;base64,"), image
    assert len(page.find_elements("css selector", "#attribute-sliders input")) == 10
    assert [entry for entry in page.get_log("browser") if entry["level"] == "SEVERE"] == []  # no failed loads


def test_samples_at_two_temperatures_differ(page):
    temperature = element(page, "temperature")
    temperature.send_keys(Keys.HOME)  # T = 0, as a person would with the keyboard
    wait_until_ready(page)
    assert element(page, "temperature-value").text == "0.00"
    cold = sources(page, "#sample-grid img")
    temperature.send_keys(Keys.END)  # T = 1
    wait_until_ready(page)
    assert element(page, "temperature-value").text == "1.00"
    warm = sources(page, "#sample-grid img")
    assert len(cold) == len(warm) == 10 and all(a != b for a, b in zip(cold, warm))


def test_an_uploaded_png_is_shown_with_its_reconstruction(page, tmp_path):
    stroke = np.zeros((40, 60, 3), np.uint8)  # a wide image: centre-cropped to 40x40, resized to 16x16
    stroke[8:32, 26:34] = 255
    path = tmp_path / "stroke.png"
    Image.fromarray(stroke).save(path)
    before = element(page, "encode-output").get_attribute("src")
    page.find_element("css selector", "#encode-picker input[type=file]").send_keys(str(path))
    wait_for(page, lambda: element(page, "encode-output").get_attribute("src") != before, "no reconstruction shown")
    wait_until_ready(page)
    assert element(page, "encode-note").text == "centre-cropped and resized from 60x40 to 16x16"
    shown, reconstruction = (pixels(element(page, name).get_attribute("src")) for name in ("encode-input",
                                                                                          "encode-output"))
    assert shown.shape == (16, 16, 3) and shown[8, 8].tolist() == [255, 255, 255] and shown[8, 1].tolist() == [0, 0, 0]
    assert np.abs(reconstruction.astype(int) - shown).max() <= 1  # an 8-bit model gives its input back
    assert element(page, "encode-error").text == ""


def test_moving_the_mix_slider_changes_the_mix(page):
    before = element(page, "mix-output").get_attribute("src")
    ActionChains(page).drag_and_drop_by_offset(element(page, "mix-alpha"), 70, 0).perform()  # a drag to the right
    wait_until_ready(page)
    assert float(element(page, "mix-alpha-value").text) > 0.6
    assert element(page, "mix-output").get_attribute("src") != before


def test_a_slider_drag_sends_only_the_value_it_rests_on(page):
    """Twenty values in one go: the first is sent at once, the others wait, each replacing the one
    before, and the last is sent when the first is answered; meanwhile the page says it works."""
    page.execute_script("""
        window.mixAlphasSent = [];
        const send = window.fetch;
        window.fetch = (path, options) => {
            if (path === "/api/mix") window.mixAlphasSent.push(JSON.parse(options.body).alpha);
            return send(path, options);
        };""")
    status = page.execute_script("""
        const slider = document.getElementById("mix-alpha");
        for (let i = 1; i <= 20; i++) {
            slider.value = i / 20;
            slider.dispatchEvent(new Event("input"));
        }
        return document.getElementById("status").textContent;""")
    assert status == "working…"
    wait_until_ready(page)
    assert page.execute_script("return window.mixAlphasSent") == [0.05, 1]


def test_a_non_image_upload_shows_the_servers_message(page, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    page.find_element("css selector", "#encode-picker input[type=file]").send_keys(str(path))
    wait_for(page, lambda: element(page, "encode-error").text, "no error shown")
    assert element(page, "encode-error").text.startswith("image: expected an image file PIL can read (PNG, JPEG")
    assert "got a file of no image format it knows (starting b'not an image')" in element(page, "encode-error").text
    wait_until_ready(page)
    element(page, "new-samples").click()  # the page and the server go on
    wait_until_ready(page)
    assert len(sources(page, "#sample-grid img")) == 10
