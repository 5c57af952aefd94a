"""Shared helpers of the etx serve tests (tests/serve/run_serve_tests.sh runs them).

Environment:
  ETX_BIN              the etx binary under test (run_serve_tests.sh sets BUILD_DIR/etx)
  ETX_MODEL            the model (default: models/cache/SmolLM2-135M-Instruct.Q4_1.gguf,
                       where models/fetch_default_model.sh puts it)
  ETX_SERVE_THREADS    --threads for every etx process (default 2, capped at the CPUs)
  ETX_SERVE_DEVICE     --device for every etx process (default cpu)
  ETX_SERVE_READY_S    how long a server may take to print its ready line (default 120)

A server is started with --port 0 and its address read from the one line it prints on
stderr when it is ready: `etx serve: listening on http://HOST:PORT (model NAME, ...)`.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ETX = os.environ.get("ETX_BIN") or os.path.join(ROOT, "build", "etx")
MODEL = os.environ.get("ETX_MODEL") or os.path.join(ROOT, "models", "cache", "SmolLM2-135M-Instruct.Q4_1.gguf")
THREADS = str(min(int(os.environ.get("ETX_SERVE_THREADS", "2")), os.cpu_count() or 1))
DEVICE = os.environ.get("ETX_SERVE_DEVICE", "cpu")
READY_S = float(os.environ.get("ETX_SERVE_READY_S", "120"))
# --model-name's default: the model file's name without .gguf
DEFAULT_NAME = re.sub(r"\.gguf$", "", os.path.basename(MODEL.rstrip("/")))

READY_RE = re.compile(r"etx serve: listening on http://([^\s:/]+|\[[^\]]+\]):(\d+) \(model ([^,)]+)")


class Server:
    """An `etx serve` process on a free port; stderr is collected in self.log."""

    def __init__(self, *args, name=None, etx=None, device=None):
        self.cmd = [etx or ETX, "serve", "-m", MODEL, "--host", "127.0.0.1", "--port", "0",
                    "--threads", THREADS, "--device", device or DEVICE, *map(str, args)]
        if name is not None:
            self.cmd += ["--model-name", name]
        self.log = []
        env = dict(os.environ)
        env.pop("ETX_API_KEY", None)  # --api-key's default: only the tests that pass it get a key
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env)
        self._ready = threading.Event()
        self.host = self.port = self.name = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.time() + READY_S
        while not self._ready.is_set():
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise RuntimeError("etx serve exited with %s before it was ready: %s\n%s"
                                   % (self.proc.returncode, " ".join(self.cmd), self.log_text()))
            if time.time() > deadline:
                self.kill()
                raise RuntimeError("etx serve printed no ready line in %.0f s: %s\n%s"
                                   % (READY_S, " ".join(self.cmd), self.log_text()))
            self._ready.wait(0.05)
        self.url = "http://%s:%d" % (self.host, self.port)
        self.base_url = self.url + "/v1"

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            m = READY_RE.search(line)
            if m and not self._ready.is_set():
                self.host, self.port, self.name = m.group(1).strip("[]"), int(m.group(2)), m.group(3)
                self._ready.set()

    def log_text(self):
        return "\n".join(self.log[-60:])

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(2)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=30):
        """SIGTERM, then the exit status (None if it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
        return rc

    # -- plain HTTP (urllib, no client library) -----------------------------------------
    def request(self, method, path, body=None, headers=None, raw=None, timeout=120):
        """Returns (status, headers, parsed JSON or the text when it is not JSON)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, hdrs, text = r.status, dict(r.headers), r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status, hdrs, text = e.code, dict(e.headers), e.read().decode("utf-8", "replace")
        except (http.client.HTTPException, ConnectionError, urllib.error.URLError) as e:
            if path == "/health":
                raise
            raise AssertionError("%s %s %r: no HTTP answer (%s: %s)\nserver log:\n%s" % (
                method, path, (data or b"")[:300], type(e).__name__, e, self.log_text()))
        try:
            return status, hdrs, json.loads(text)
        except ValueError:
            return status, hdrs, text

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def health(self):
        return self.request("GET", "/health", timeout=10)


def start_server(*args, **kw):
    return Server(*args, **kw)


def run_etx(*args, timeout=300, etx=None):
    """Runs an etx subcommand (of `etx`, default ETX_BIN); returns stdout (bytes). Fails the
    test on a non-zero exit."""
    cmd = [etx or ETX, *map(str, args)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s" % (" ".join(cmd), p.returncode,
                                                    p.stderr.decode("utf-8", "replace")[-3000:]))
    return p.stdout


def etx_generate(prompt=None, chat=None, system=None, n=16, extra=(), etx=None, device=None, timeout=300):
    """`etx generate` greedy text (it prints the continuation and then one newline)."""
    args = ["generate", "-m", MODEL, "-n", n, "--policy", "greedy", "--threads", THREADS, "--device", device or DEVICE]
    if prompt is not None:
        args += ["-p", prompt]
    if chat is not None:
        args += ["--chat", chat]
    if system is not None:
        args += ["--system", system]
    out = run_etx(*args, *extra, timeout=timeout, etx=etx).decode("utf-8")
    assert out.endswith("\n"), repr(out)
    return out[:-1]


def etx_tokenize(text):
    p = subprocess.run([ETX, "tokenize", "-m", MODEL], input=text.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return [int(x) for x in p.stdout.split()]


@pytest.fixture(scope="session")
def etx_bin():
    if not os.access(ETX, os.X_OK):
        pytest.fail("no etx binary at %s (set ETX_BIN)" % ETX)
    if not os.path.exists(MODEL):
        pytest.fail("no model at %s (models/fetch_default_model.sh, or set ETX_MODEL)" % MODEL)
    return ETX
