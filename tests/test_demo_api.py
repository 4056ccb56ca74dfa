"""glow-demo's HTTP API (glow_tf/demo/): every endpoint's answers, status codes and content types,
and bad input answered with a 4xx and a message while the server goes on, on the real program
(tests/demo_process.py) over a tiny trained class-conditional digits model."""
import base64
import http.client
import io
import json
import os
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from conftest import build_model, tiny_config
from demo_process import files_in
from glow_tf import sampling
from glow_tf.demo import attributes, inputs
from glow_tf.demo.api import DemoApi
from glow_tf.demo.inputs import RequestError

pytestmark = pytest.mark.xdist_group("demo_server")  # the demo_server fixture, built once
SIZE = 16  # the tiny digits model's images: 16x16x3, D = 768, 10 classes


def request(server, method, path, body=None, headers=None):
    """(status, content type, body: parsed JSON for JSON answers, else bytes). ``body``: a dict
    (sent as JSON) or raw bytes."""
    url = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    connection.request(method, path, body=data, headers=headers or {})
    response = connection.getresponse()
    content_type, raw = response.getheader("Content-Type"), response.read()
    connection.close()
    return response.status, content_type, json.loads(raw) if content_type == "application/json" and raw else raw


def post(server, path, body):
    return request(server, "POST", path, body)


def ok(server, path, body):
    status, content_type, answer = post(server, path, body)
    assert (status, content_type) == (200, "application/json"), (status, answer)
    return answer


def refused(server, path, body, status, *fragments):
    """Asserts ``status`` with a JSON error message holding ``fragments``; returns the message."""
    got, content_type, answer = post(server, path, body)
    assert (got, content_type) == (status, "application/json"), (got, answer)
    for fragment in fragments:
        assert fragment in answer["error"], answer["error"]
    return answer["error"]


def pixels(data_url):
    """uint8 [H, W, 3] of a PNG data URL."""
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


def data_url(image_or_bytes, kind="image/png"):
    if isinstance(image_or_bytes, bytes):
        raw = image_or_bytes
    else:
        buffer = io.BytesIO()
        image_or_bytes.save(buffer, format="PNG")
        raw = buffer.getvalue()
    return f"data:{kind};base64," + base64.b64encode(raw).decode()


def encoded(server, **source):
    return ok(server, "/api/encode", {"y": 0, **source})


# ------------------------------------------------------------------------------ page and info
def test_page_and_its_assets_come_from_the_package_with_nothing_from_elsewhere(demo_server):
    for path, kind in (("/", "text/html"), ("/demo.js", "text/javascript"), ("/demo.css", "text/css")):
        status, content_type, body = request(demo_server, "GET", path)
        assert status == 200 and content_type == f"{kind}; charset=utf-8", (path, status, content_type)
        text = body.decode()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path  # offline
    page = request(demo_server, "GET", "/")[2].decode()
    assert '<script src="demo.js"' in page and 'href="demo.css"' in page
    url = urllib.parse.urlsplit(demo_server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    connection.request("GET", "/")
    policy = connection.getresponse().getheader("Content-Security-Policy")
    connection.close()
    assert "default-src 'self'" in policy and "img-src 'self' data:" in policy


def test_info_describes_the_model_its_sliders_and_held_out_images(demo_server):
    status, content_type, info = request(demo_server, "GET", "/api/info")
    assert (status, content_type) == (200, "application/json")
    model = info["model"]
    assert (model["image_size"], model["n_channels"], model["ycond"], model["n_y"], model["latent_size"]) == \
        (SIZE, 3, True, 10, SIZE * SIZE * 3)
    assert model["name"] == str(demo_server.logdir)
    assert info["alpha"] == {"min": -0.99, "max": 0.99} and info["mix"] == {"min": 0, "max": 1}
    assert info["temperature"] == {"min": 0, "max": 1, "default": 0.7}
    assert info["attributes"]["names"] == [f"class {k}" for k in range(10)]  # 60 digits hold every class
    assert "60 held-out images of digits, x1.6" in info["attributes"]["source"]
    assert len(info["examples"]) == 4 and info["max_upload_bytes"] == 50_000
    examples = [pixels(example["image"]) for example in info["examples"]]
    assert all(image.shape == (SIZE, SIZE, 3) for image in examples)
    assert all(isinstance(example["label"], int) for example in info["examples"])


def test_the_server_binds_this_machine_only_by_default(demo_server):
    assert demo_server.url.startswith("http://127.0.0.1:")


# ------------------------------------------------------------------------------------ random
def test_random_samples_follow_the_temperature_and_the_seed(demo_server):
    def draw(**body):
        images = ok(demo_server, "/api/random", {"n": 3, **body})["images"]
        assert len(images) == 3
        return np.stack([pixels(image) for image in images])

    cold = draw(temperature=0, y=3)
    assert (cold == cold[0]).all()  # T = 0: every eps is 0, so one class gives one image
    warm = draw(temperature=1, y=3, seed=5)
    assert not (warm == warm[0]).all() and not np.array_equal(warm, cold)
    np.testing.assert_array_equal(draw(temperature=1, y=3, seed=5), warm)  # a seed is one draw
    assert not np.array_equal(draw(temperature=1, y=3, seed=6), warm)
    assert len(ok(demo_server, "/api/random", {"temperature": 0.5})["images"]) == 10  # 10 by default, class i % 10


@pytest.mark.parametrize("body, fragment", [
    ({}, "temperature: expected a value, got none"),
    ({"temperature": 1.5}, "temperature: expected a number in [0, 1], got 1.5"),
    ({"temperature": "hot"}, "temperature: expected a number in [0, 1], got 'hot'"),
    ({"temperature": True}, "temperature: expected a number in [0, 1], got True"),
    ({"temperature": 0.5, "n": 0}, "n: expected an integer in [1, 64], got 0"),
    ({"temperature": 0.5, "y": 10}, "y: expected an integer in [0, 9], got 10"),
    ({"temperature": 0.5, "seed": -1}, "seed: expected an integer in [0, 9223372036854775807], got -1"),
])
def test_random_refuses_bad_fields(demo_server, body, fragment):
    refused(demo_server, "/api/random", body, 400, fragment)


# ------------------------------------------------------------------------------------ encode
def test_encode_gives_a_held_out_image_its_latent_and_reconstruction(demo_server):
    info = request(demo_server, "GET", "/api/info")[2]
    answer = encoded(demo_server, example=1)
    image = pixels(answer["image"])
    np.testing.assert_array_equal(image, pixels(info["examples"][1]["image"]))
    assert np.abs(pixels(answer["reconstruction"]).astype(int) - image).max() <= 1  # 8 bits: the input back
    z = base64.b64decode(answer["z"])
    assert len(z) == 4 * SIZE * SIZE * 3 and answer["note"] == ""
    assert encoded(demo_server, example=1)["z"] == answer["z"]  # an image encodes to one latent
    assert encoded(demo_server, example=1, y=7)["z"] != answer["z"]  # ... per class


def test_encode_fits_an_upload_as_glow_sample_reads_images(demo_server, tmp_path):
    wide = np.zeros((32, 48, 3), np.uint8)  # the centre 32x32 square one colour, the sides others
    wide[:, :8], wide[:, 8:40], wide[:, 40:] = (255, 0, 0), (10, 200, 30), (0, 0, 255)
    answer = encoded(demo_server, image=data_url(Image.fromarray(wide)))
    np.testing.assert_array_equal(pixels(answer["image"]), np.broadcast_to(np.uint8([10, 200, 30]), (SIZE, SIZE, 3)))
    assert answer["note"] == "centre-cropped and resized from 48x32 to 16x16"
    gray = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(SIZE, SIZE))  # mode L: tiled to RGB
    path = tmp_path / "gray.png"
    gray.save(path)
    np.testing.assert_array_equal(pixels(encoded(demo_server, image=data_url(path.read_bytes()))["image"]),
                                  np.repeat(np.asarray(gray)[..., None], 3, axis=2))
    assert sampling.read_image(path, (SIZE, SIZE, 3)).tolist() == pixels(encoded(demo_server, image=data_url(
        path.read_bytes()))["image"]).tolist()


def _png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _noise_png():
    return _png_bytes(Image.fromarray(np.random.RandomState(0).randint(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)))


# The files are made when the test runs (the 25-megapixel one takes a moment).
@pytest.mark.parametrize("make_file, status, fragment", [
    (lambda: b"just some text", 400, "image: expected an image file PIL can read (PNG, JPEG, GIF, BMP, WebP, TIFF), "
                                     "got a file of no image format it knows (starting b'just some text')"),
    (lambda: _noise_png()[:60], 400, "got a file it cannot read (image file is truncated)"),
    (lambda: _png_bytes(Image.fromarray(np.full((SIZE, SIZE), 40000, np.uint16))), 415,
     "the uploaded image: expected 8 bits per channel (PIL modes 1, L, LA, La, P, PA, RGB"),
    (lambda: _png_bytes(Image.new("1", (5001, 5000))), 413, "image: expected at most 25,000,000 pixels, got 5001x5000"),
    (lambda: os.urandom(50_001), 413, "image: expected a file of at most 50,000 bytes, got 50,001"),
    (lambda: b"", 400, "got an empty file"),
])
def test_encode_refuses_bad_uploads_with_a_message(demo_server, make_file, status, fragment):
    refused(demo_server, "/api/encode", {"image": data_url(make_file()), "y": 0}, status, fragment)


@pytest.mark.parametrize("body, fragment", [
    ({"image": "a.png", "y": 0}, "image: expected a base64 data URL (data:<type>;base64,<file>), got 'a.png'"),
    ({"image": "data:image/png;base64,***", "y": 0}, "whose data is not base64"),
    ({"y": 0}, "expected one of image (a data URL of an image file) and example"),
    ({"image": data_url(b"x"), "example": 0, "y": 0}, "got image and example"),
    ({"example": 4, "y": 0}, "example: expected an integer in [0, 3], got 4"),
    ({"example": 0}, "y: expected a value, got none"),  # a class-conditional model encodes with a class
])
def test_encode_refuses_bad_requests(demo_server, body, fragment):
    refused(demo_server, "/api/encode", body, 400, fragment)


# ----------------------------------------------------------------------- mix and manipulate
def test_mix_decodes_between_two_latents(demo_server):
    a, b = encoded(demo_server, example=0), encoded(demo_server, example=2)

    def mix(alpha):
        return pixels(ok(demo_server, "/api/mix", {"z1": a["z"], "z2": b["z"], "alpha": alpha, "y": 0})["image"])

    np.testing.assert_array_equal(mix(0), pixels(a["reconstruction"]))
    np.testing.assert_array_equal(mix(1), pixels(b["reconstruction"]))
    middle = mix(0.5)
    assert not np.array_equal(middle, mix(0)) and not np.array_equal(middle, mix(1))


def test_manipulate_moves_along_the_class_directions(demo_server):
    a = encoded(demo_server, example=0)

    def manipulate(alphas):
        return pixels(ok(demo_server, "/api/manipulate", {"z": a["z"], "alphas": alphas, "y": 0})["image"])

    np.testing.assert_array_equal(manipulate([0] * 10), pixels(a["reconstruction"]))
    towards_3 = manipulate([0, 0, 0, 0.99, 0, 0, 0, 0, 0, 0])
    assert np.abs(towards_3.astype(int) - pixels(a["reconstruction"])).mean() > 1
    assert not np.array_equal(manipulate([0, 0, 0, -0.99, 0, 0, 0, 0, 0, 0]), towards_3)


def _latent_text(values):
    return base64.b64encode(np.asarray(values, "<f4").tobytes()).decode()


@pytest.mark.parametrize("path, body, fragment", [
    ("/api/mix", {"z2": "", "alpha": 0.5, "y": 0}, "z1: expected a value, got none"),
    ("/api/mix", {"z1": "not base64!", "alpha": 0.5, "y": 0}, "z1: expected a latent (base64 of 768 float32 values, "
                                                                "as /api/encode answers), got 'not base64!'"),
    ("/api/mix", {"z1": _latent_text(np.zeros(700)), "alpha": 0.5, "y": 0}, "z1: expected a latent (base64 of 768 "
                                                                             "float32 values, as /api/encode "
                                                                             "answers), got 700 values"),
    ("/api/mix", {"z1": _latent_text([np.nan] * 768), "z2": _latent_text(np.zeros(768)), "alpha": 0.5, "y": 0},
     "got 768 values that are not finite"),
    ("/api/mix", {"z1": _latent_text(np.zeros(768)), "z2": _latent_text(np.zeros(768)), "alpha": 2, "y": 0},
     "alpha: expected a number in [0, 1], got 2"),
    ("/api/manipulate", {"z": _latent_text(np.zeros(768)), "alphas": [0] * 3, "y": 0},
     "alphas: expected a list of 10 numbers in [-0.99, 0.99] (one per attribute), got [0, 0, 0]"),
    ("/api/manipulate", {"z": _latent_text(np.zeros(768)), "alphas": [1.6] + [0] * 9, "y": 0},
     "alphas: expected a list of 10 numbers in [-0.99, 0.99] (one per attribute), got a list of 10"),
    ("/api/manipulate", {"z": _latent_text(np.zeros(768)), "alphas": [0] * 10}, "y: expected a value, got none"),
])
def test_mix_and_manipulate_refuse_bad_latents_and_values(demo_server, path, body, fragment):
    refused(demo_server, path, body, 400, fragment)


# -------------------------------------------------------------------------- HTTP and safety
def test_bad_http_requests_get_4xx_and_the_server_goes_on(demo_server):
    status, content_type, answer = request(demo_server, "GET", "/../../etc/passwd")
    assert (status, content_type) == (404, "application/json") and "got '/../../etc/passwd'" in answer["error"]
    assert request(demo_server, "GET", "/api/mix")[0] == 405
    status, _, answer = request(demo_server, "POST", "/api/info", b"{}", {"Content-Type": "application/json"})
    assert status == 405 and answer["error"] == "/api/info: expected GET, got POST"
    for method in ("PUT", "DELETE", "HEAD"):  # not http.server's 501
        assert request(demo_server, method, "/api/random", b"{}")[0] == 405, method
    status, _, answer = request(demo_server, "PUT", "/api/random", b"{}")
    assert answer["error"] == "/api/random: expected GET or POST, got PUT"
    assert request(demo_server, "POST", "/api/random", b"{not json")[0] == 400
    status, _, answer = request(demo_server, "POST", "/api/random", b"[1, 2]")
    assert status == 400 and answer["error"] == "expected a JSON object, got a JSON list"
    assert headers_only(demo_server, "/api/random", {}) == 411  # no Content-Length
    # Over the request cap: answered from the headers, the body never read (so not sent here).
    assert headers_only(demo_server, "/api/encode", {"Content-Length": "300000"}) == 413
    assert request(demo_server, "GET", "/api/info")[0] == 200 and demo_server.process.poll() is None


def headers_only(server, path, headers):
    """The status of a POST whose headers are sent and its body not."""
    url = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    connection.putrequest("POST", path)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    status = connection.getresponse().status
    connection.close()
    return status


def test_the_server_writes_no_file(demo_server):
    """Run after the others in this file: the directory it runs in is still empty, the model untouched."""
    assert os.listdir(demo_server.cwd) == []
    assert files_in(demo_server.logdir) == demo_server.model_files


# ------------------------------------------------------------------- without a class or labels
def test_an_unconditional_model_takes_no_class_and_a_demo_without_labels_has_no_sliders():
    served = sampling.ServedGlow.from_model(build_model(tiny_config(image_size=8)), batch_size=4)
    none = attributes.no_attributes(8 * 8 * 3, "no labelled images")
    api = DemoApi(served, none, None, None, max_upload_bytes=10_000, name="tiny")
    assert len(api.random({"temperature": 0.5, "n": 2})["images"]) == 2
    with pytest.raises(RequestError, match="y: this model is not class-conditional; expected no class, got 1"):
        api.random({"temperature": 0.5, "y": 1})
    with pytest.raises(RequestError, match="example: expected no example .this demo has no held-out images"):
        api.encode({"example": 0})
    z = api.encode({"image": data_url(Image.new("RGB", (8, 8), (90, 20, 200)))})["z"]
    with pytest.raises(RequestError, match=r"manipulate: this demo has no attribute directions \(no labelled images\)"):
        api.manipulate({"z": z, "alphas": []})
    assert api.info()["examples"] == [] and api.info()["attributes"]["names"] == []
    assert inputs.latent({"z": z}, "z", 8 * 8 * 3).shape == (8 * 8 * 3,)
    # the constructor's checks
    with pytest.raises(ValueError, match=r"max_upload_bytes: expected an int >= 1, got 0"):
        DemoApi(served, none, None, None, max_upload_bytes=0, name="tiny")
    with pytest.raises(ValueError, match=r"attributes: expected directions \[K, 192\] .*, got \[0, 48\]"):
        DemoApi(served, attributes.no_attributes(48, ""), None, None, max_upload_bytes=10, name="tiny")
    with pytest.raises(ValueError, match=r"examples: expected uint8 \[N, 8, 8, 3\], got uint8 \[2, 16, 16, 3\]"):
        DemoApi(served, none, np.zeros((2, 16, 16, 3), np.uint8), None, max_upload_bytes=10, name="tiny")
    with pytest.raises(ValueError, match=r"example_labels: expected one label per example \(\[2\]\) or None, got \[3\]"):
        DemoApi(served, none, np.zeros((2, 8, 8, 3), np.uint8), np.zeros(3), max_upload_bytes=10, name="tiny")


# ------------------------------------------------------------- the original's z_manipulate.npy
def test_directions_in_the_originals_z_manipulate_format_are_read_and_checked(tmp_path):
    path = tmp_path / "z_manipulate.npy"
    np.save(path, np.eye(40, 48, dtype=np.float32))
    read = attributes.load_directions(path, 48)
    assert read.names == attributes.CELEBA_ATTRIBUTES and read.names[31] == "Smiling"  # the original's 40, in order
    np.testing.assert_array_equal(read.shift(np.eye(40)[31]), np.eye(48)[31])
    np.save(path, np.ones((2, 48), np.float64))
    assert attributes.load_directions(path, 48, ["thick", "slanted"]).names == ("thick", "slanted")
    assert attributes.load_directions(path, 48).names == ("direction 0", "direction 1")
    with pytest.raises(ValueError, match=r"attribute_names: expected 2 names \(one per row of .*\), got 1"):
        attributes.load_directions(path, 48, ["thick"])
    with pytest.raises(ValueError, match=r"directions: expected float32 \[K, 50\] .*, got float64 \[2, 48\]"):
        attributes.load_directions(path, 50)
    with pytest.raises(ValueError, match="directions: expected a .npy file of float32 .K, 48. .*which cannot be read"):
        attributes.load_directions(tmp_path / "absent.npy", 48)


@pytest.mark.parametrize("args, message", [
    ([], "expected exactly one of --model and --openai_checkpoint, got neither"),
    (["--openai_checkpoint", "model.ckpt"], "--hparams: expected the original's hps (JSON or train.txt) with "
                                            "--openai_checkpoint, got none"),
])
def test_a_bad_command_line_stops_glow_demo_with_one_line(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "glow_tf.demo", *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"python -m glow_tf.demo: error: {message}\n")
