"""The demo's HTTP server (the standard library's): the page and its assets, and the API as JSON.

What it will do, and nothing else:
* serve the files of ``web/`` that ASSETS names, read from this package once at start: a
  request's path is looked up there and is never a file path;
* answer /api/info (GET) and the POST endpoints of ``DemoApi.routes`` with JSON, a request that
  fails its checks with its 4xx and ``{"error": message}``, and any other failure with 500 and
  the same form (the traceback goes to the log): the server goes on serving; any method but
  GET and POST gets 405;
* read a request body only when its Content-Length is at most ``max_request_bytes`` (else 413,
  unread), within ``REQUEST_TIMEOUT`` seconds;
* write no file. It listens where it is told (glow-demo: 127.0.0.1 unless --host says otherwise),
  and its page loads nothing from elsewhere (CSP below: no CDN, no fonts from the web).
"""
import http.server
import importlib.resources
import json
import math

from absl import logging

from glow_tf.demo.inputs import BAD_REQUEST, TOO_LARGE, RequestError, latent_text_size

# path -> (file in web/, content type)
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
          "/demo.css": ("demo.css", "text/css; charset=utf-8")}
JSON_TYPE = "application/json"
# The page may load from this server and show data: URL images (the API's), nothing else.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")
REQUEST_TIMEOUT = 60  # seconds a connection may take to send its request
# Room in a request for the fields besides its upload or latents.
REQUEST_OVERHEAD = 64 * 1024
LENGTH_REQUIRED, NOT_FOUND, METHOD_NOT_ALLOWED, INTERNAL_ERROR = 411, 404, 405, 500


def request_size_limit(max_upload_bytes, latent_size) -> int:
    """Bytes of the largest request body: an upload as a base64 data URL, or /api/mix's two latents."""
    upload = 4 * math.ceil(max_upload_bytes / 3)
    return max(upload, 2 * latent_text_size(latent_size)) + REQUEST_OVERHEAD


def load_assets():
    """{path: (bytes, content type)} of ASSETS, from the installed package."""
    web = importlib.resources.files("glow_tf.demo").joinpath("web")
    return {path: (web.joinpath(name).read_bytes(), content_type) for path, (name, content_type) in ASSETS.items()}


class DemoServer(http.server.ThreadingHTTPServer):
    """Serves ``api`` (a ``DemoApi``) and the page at (host, port); port 0 takes a free port (``url`` tells it)."""

    daemon_threads = True  # a connection still open does not keep the program from ending

    def __init__(self, api, host, port):
        self.api = api
        self.assets = load_assets()
        self.max_request_bytes = request_size_limit(api.max_upload_bytes, api.latent_size)
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "glow-demo"
    timeout = REQUEST_TIMEOUT

    def do_GET(self):
        path = self._route()
        if path == "/api/info":
            self._answer(lambda: self.server.api.info())
        elif path in self.server.assets:
            body, content_type = self.server.assets[path]
            self._send(200, content_type, body)
        else:
            self._refuse_unknown(path, "GET")

    def do_POST(self):
        path = self._route()
        endpoint = self.server.api.routes().get(path)
        if endpoint is None:
            self._refuse_unknown(path, "POST")
        else:
            self._answer(lambda: endpoint(self._json_body()))

    def __getattr__(self, name):
        """do_PUT, do_DELETE, ...: every other method is refused with 405 (not http.server's 501)."""
        if name.startswith("do_"):
            return self._refuse_method
        raise AttributeError(name)

    # ---------------------------------------------------------------------------
    def _refuse_method(self):
        self._discard_body()
        self._send_error(METHOD_NOT_ALLOWED, f"{self._route()}: expected GET or POST, got {self.command}")

    def _route(self):
        return self.path.split("?", 1)[0]

    def _refuse_unknown(self, path, method):
        self._discard_body()
        posts, gets = set(self.server.api.routes()), set(self.server.assets) | {"/api/info"}
        other = gets if method == "POST" else posts
        if path in other:
            self._send_error(METHOD_NOT_ALLOWED, f"{path}: expected {'GET' if path in gets else 'POST'}, got {method}")
        else:
            self._send_error(NOT_FOUND, f"expected one of {', '.join(sorted(gets | posts))}, got {path!r}")

    def _discard_body(self):
        """Reads a body of at most max_request_bytes unanswered: a socket closed with unread data resets
        the connection, and the client could lose the answer."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= self.server.max_request_bytes:
            self.rfile.read(int(length))
        elif length:
            self.close_connection = True

    def _json_body(self):
        """The request's JSON object (RequestError when it is missing, too large or not one)."""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise RequestError(LENGTH_REQUIRED, f"expected a Content-Length header, got {length!r}")
        if int(length) > self.server.max_request_bytes:
            self.close_connection = True  # the body stays unread
            raise RequestError(TOO_LARGE, f"expected a request of at most {self.server.max_request_bytes:,} bytes, "
                                          f"got {int(length):,}")
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RequestError(BAD_REQUEST, f"expected a JSON object, got a body that is not JSON ({e})") from None
        if not isinstance(body, dict):
            raise RequestError(BAD_REQUEST, f"expected a JSON object, got a JSON {type(body).__name__}")
        return body

    def _answer(self, compute):
        """Sends ``compute()`` as JSON, or its error (see the module docstring)."""
        try:
            answer = compute()
        except RequestError as e:
            self._send_error(e.status, str(e))
        except Exception as e:  # noqa: BLE001  the server outlives any one request
            logging.exception("%s %s failed", self.command, self.path)
            self._send_error(INTERNAL_ERROR, f"internal error ({type(e).__name__}: {e}); the server log has the "
                                             "traceback")
        else:
            self._send(200, JSON_TYPE, json.dumps(answer).encode())

    def _send_error(self, status, message):
        logging.info("%s %s: %d %s", self.command, self.path, status, message)
        self._send(status, JSON_TYPE, json.dumps({"error": message}).encode())

    def _send(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers only
            self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002  BaseHTTPRequestHandler's signature
        logging.info("%s " + format, self.address_string(), *args)
