#!/usr/bin/env python3
"""serve_load.py — a bounded load test of `etx serve` (standard library only).

Starts `etx serve` (or attaches to one with --url) and keeps --clients concurrent clients
(threads, one keep-alive connection each) sending /v1/completions requests for --seconds:
mixed prompts, max_tokens 16..64, a share of them streamed, a mix of greedy, seeded
sampling and seeded entropix. Every response is checked:

  - status 200; a 429 is retried after its Retry-After (counted, not lost);
  - the text is non-empty (half the requests set ignore_eos, so they must produce exactly
    max_tokens tokens), usage is consistent (total = prompt + completion, completion <=
    max_tokens, "length" means completion == max_tokens, one prompt always counts the
    same prompt tokens), a stream ends with a finish_reason and its usage chunk;
  - determinism under load: requests that repeat a (prompt, policy, seed, max_tokens) must
    give the same text every time, and greedy answers to one prompt must agree (the shorter
    a prefix of the longer), whatever else is in the batch (the engine is batch-invariant).

A request that never gets a valid 200 (connection error, 5xx, timeout, a failed check) is
*lost*; the run fails (exit 1) if any is lost or inconsistent. It reports p50/p90/p99
latency, time to first token of the streams, requests/s and generated tokens/s, samples
/health every second (running, queued, KV blocks), and writes a markdown table to
benchmarks/results/serve-load-<model>-<date>.md with the machine, commit and command line.

    benchmarks/serve_load.py --etx build/etx --batch 32 --seconds 60
    benchmarks/serve_load.py --url http://127.0.0.1:8000 --seconds 30 --no-write
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def quicksort(arr):",
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:",
    "The three laws of thermodynamics are",
    "Write a short poem about the moon.\n",
    "In 1969, the first humans",
    "A list of useful Linux commands:\n1.",
    "The main difference between a virus and a bacterium is",
    "Translate to French: 'The weather is nice today.'\n",
    "Photosynthesis is the process by which",
    "Here is a recipe for pancakes. Ingredients:",
]
CHAT = ["What is the tallest mountain on Earth?", "Give me three tips for learning to code.",
        "Explain what a black hole is in one sentence."]


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.done = 0
        self.lost = 0
        self.lost_reasons = {}
        self.r429 = 0
        self.lat = []
        self.lat_stream = []
        self.ttft = []
        self.gen_tokens = 0
        self.prompt_tokens = 0
        self.streams = 0
        self.chats = 0
        self.first_done = None
        self.last_done = None
        self.texts = {}        # determinism key -> text
        self.greedy = {}       # (endpoint, prompt) -> distinct greedy texts (each a prefix of the longer ones)
        self.inconsistent = []
        self.prompt_count = {}  # (endpoint, prompt) -> prompt_tokens
        self.finish = {}

    def lose(self, why):
        with self.lock:
            self.lost += 1
            key = why[:160]
            self.lost_reasons[key] = self.lost_reasons.get(key, 0) + 1


class Client(threading.Thread):
    def __init__(self, idx, args, host, port, name, stats, stop_at, headers):
        super().__init__(daemon=True)
        self.idx, self.args, self.host, self.port, self.name = idx, args, host, port, name
        self.stats, self.stop_at, self.headers = stats, stop_at, headers
        self.rng = random.Random(args.seed * 1000 + idx)
        self.conn = None

    def connect(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.args.timeout)

    def make(self):
        rng = self.rng
        max_tokens = rng.choice([16, 24, 32, 48, 64])
        stream = rng.random() < self.args.stream_share
        kind = rng.choice(["greedy", "greedy", "sample", "entropix"])
        chat = rng.random() < self.args.chat_share
        ignore_eos = rng.random() < 0.5
        seed = rng.randint(0, 2)  # few seeds: repeats check determinism
        if chat:
            path = "/v1/chat/completions"
            prompt = rng.choice(CHAT)
            body = {"model": self.name, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
        else:
            path = "/v1/completions"
            prompt = rng.choice(PROMPTS)
            body = {"model": self.name, "prompt": prompt, "max_tokens": max_tokens}
        if kind == "greedy":
            body["temperature"] = 0
        elif kind == "sample":
            body.update(temperature=0.8, top_p=0.95, seed=seed)
        else:
            body.update(policy="entropix", seed=seed)
        if ignore_eos:
            body["ignore_eos"] = True
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        key = (path, prompt, kind, body.get("seed"), max_tokens, ignore_eos)
        return path, body, key, (path, prompt)

    def post(self, path, body):
        data = json.dumps(body).encode()
        for attempt in range(2):  # one reconnect when a kept-alive connection was closed
            try:
                if self.conn is None:
                    self.connect()
                self.conn.request("POST", path, data, dict(self.headers, **{"Content-Type": "application/json"}))
                return self.conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn = None
                if attempt == 1:
                    raise

    def one(self):
        path, body, key, pkey = self.make()
        st = self.stats
        t0 = time.time()
        retries = 0
        while True:
            try:
                resp = self.post(path, body)
            except Exception as e:  # noqa: BLE001 - any failure is a lost request
                self.conn = None
                st.lose("%s: %s" % (type(e).__name__, e))
                return
            if resp.status == 429:
                ra = resp.getheader("Retry-After")
                resp.read()
                with st.lock:
                    st.r429 += 1
                if ra is None:
                    st.lose("429 without Retry-After")
                    return
                retries += 1
                if retries > 1000:
                    st.lose("429 more than 1000 times")
                    return
                try:
                    wait = float(ra)
                except ValueError:
                    wait = 1.0
                time.sleep(min(max(wait, 0.05), 5.0) * (0.5 + self.rng.random()))
                continue
            break
        try:
            if resp.status != 200:
                st.lose("HTTP %d: %s" % (resp.status, resp.read()[:200].decode("utf-8", "replace")))
                self.conn = None
                return
            if body.get("stream"):
                text, usage, finish, ttft = self.read_stream(resp, t0, path)
            else:
                r = json.loads(resp.read())
                c = r["choices"][0]
                text = c["message"]["content"] if "chat" in path else c["text"]
                usage, finish, ttft = r["usage"], c["finish_reason"], None
        except Exception as e:  # noqa: BLE001
            self.conn = None
            st.lose("bad response: %s: %s" % (type(e).__name__, e))
            return
        t1 = time.time()
        problem = self.check(body, text, usage, finish)
        if problem:
            st.lose(problem)
            return
        with st.lock:
            if pkey in st.prompt_count and st.prompt_count[pkey] != usage["prompt_tokens"]:
                st.inconsistent.append("prompt_tokens %s then %s for %r" % (st.prompt_count[pkey], usage["prompt_tokens"], pkey))
            st.prompt_count.setdefault(pkey, usage["prompt_tokens"])
            if key in st.texts and st.texts[key] != text:
                st.inconsistent.append("%r: %r then %r" % (key, st.texts[key], text))
            st.texts.setdefault(key, text)
            if key[2] == "greedy":
                seen = st.greedy.setdefault(pkey, set())
                for other in seen:
                    a, b = sorted((other, text), key=len)
                    if not b.startswith(a):
                        st.inconsistent.append("greedy %r: %r is not a prefix of %r" % (pkey, a, b))
                        break
                seen.add(text)
            st.done += 1
            st.lat.append(t1 - t0)
            if body.get("stream"):
                st.streams += 1
                st.lat_stream.append(t1 - t0)
                if ttft is not None:
                    st.ttft.append(ttft)
            if "chat" in path:
                st.chats += 1
            st.gen_tokens += usage["completion_tokens"]
            st.prompt_tokens += usage["prompt_tokens"]
            st.finish[finish] = st.finish.get(finish, 0) + 1
            st.first_done = st.first_done or t1
            st.last_done = t1

    def read_stream(self, resp, t0, path):
        text, usage, finish, ttft = [], None, None, None
        saw_done = False
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                saw_done = True
                break
            ev = json.loads(payload)
            if ev.get("usage"):
                usage = ev["usage"]
            for c in ev.get("choices") or []:
                piece = (c.get("delta") or {}).get("content") if "chat" in path else c.get("text")
                if piece:
                    if ttft is None:
                        ttft = time.time() - t0
                    text.append(piece)
                if c.get("finish_reason"):
                    finish = c["finish_reason"]
        # a stream has no Content-Length: drain whatever follows [DONE] so the connection stays usable
        resp.read()
        if not saw_done:
            raise ValueError("stream ended without data: [DONE]")
        if usage is None:
            raise ValueError("stream without a usage chunk (stream_options.include_usage)")
        return "".join(text), usage, finish, ttft

    @staticmethod
    def check(body, text, usage, finish):
        mt = body["max_tokens"]
        try:
            p, c, t = usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]
        except (KeyError, TypeError):
            return "usage missing: %r" % (usage,)
        if t != p + c:
            return "usage: total %d != prompt %d + completion %d" % (t, p, c)
        if not (0 < c <= mt) or p <= 0:
            return "usage: completion %d for max_tokens %d (prompt %d)" % (c, mt, p)
        if finish not in ("stop", "length"):
            return "finish_reason %r" % (finish,)
        if finish == "length" and c != mt:
            return "finish length with %d of %d tokens" % (c, mt)
        if body.get("ignore_eos") and (finish != "length" or c != mt):
            return "ignore_eos: finish %s with %d of %d tokens" % (finish, c, mt)
        if not text and not (finish == "stop" and c <= 1):
            return "empty text with %d tokens (finish %s)" % (c, finish)
        return None

    def run(self):
        while time.time() < self.stop_at:
            self.one()
        if self.conn is not None:
            self.conn.close()


def health(host, port, headers):
    try:
        c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", "/health", headers=headers)
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        return body
    except Exception:  # noqa: BLE001
        return None


def start_server(args):
    cmd = [args.etx, "serve", "-m", args.model, "--host", "127.0.0.1", "--port", "0", "--batch", str(args.batch)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.device:
        cmd += ["--device", args.device]
    cmd += shlex.split(args.server_args)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rx = re.compile(r"etx serve: listening on http://([^\s:/]+):(\d+) \(model ([^,)]+)")
    lines = []
    deadline = time.time() + 180
    while time.time() < deadline:
        raw = proc.stderr.readline()
        if not raw:
            break
        line = raw.decode("utf-8", "replace").rstrip()
        lines.append(line)
        m = rx.search(line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep draining
            return proc, m.group(1), int(m.group(2)), m.group(3), cmd
    proc.kill()
    sys.exit("serve_load.py: etx serve did not become ready:\n" + "\n".join(lines[-30:]))


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = "%.1f GiB RAM" % (kb / 1048576)
    except (OSError, ValueError, IndexError):
        pass
    return "%s, %d CPUs, %s, %s %s" % (cpu, os.cpu_count() or 0, mem, platform.system(), platform.release())


def commit():
    try:
        h = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return h + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def bench_baseline(args):
    """Offline decode tokens/s at the server's batch (etx bench, 32-token prompts, 32
    generated, greedy and entropix), measured here before the load: the served rate's
    baseline, on the same machine in the same script. {policy: tok/s}, or None."""
    cmd = [args.etx, "bench", "-m", args.model, "-b", str(args.batch), "-l", "32", "-g", "32", "--policy",
           "greedy,entropix", "-r", "1", "--warmup", "1", "--quick-probe", "--json", "-"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        return {x["policy"]: x["decode_tok_s"] for x in json.loads(r.stdout)["results"]}
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
        print("serve_load: no offline baseline (%s)" % e, file=sys.stderr)
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="attach to a running server (http://HOST:PORT) instead of starting one")
    ap.add_argument("--etx", default=os.path.join(ROOT, "build", "etx"), help="etx binary (default build/etx)")
    ap.add_argument("-m", "--model", default=os.environ.get("ETX_MODEL") or
                    os.path.join(ROOT, "models", "cache", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--model-name", help="the served model's name (with --url; default: the first of /v1/models)")
    ap.add_argument("--api-key", default=os.environ.get("ETX_API_KEY"))
    ap.add_argument("--batch", type=int, default=32, help="etx serve --batch (default 32)")
    ap.add_argument("--threads", type=int, default=0, help="etx serve --threads (default: the server's)")
    ap.add_argument("--device", default=None, help="etx serve --device")
    ap.add_argument("--server-args", default="", help="more etx serve options, one string")
    ap.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    ap.add_argument("--seconds", type=float, default=60, help="how long clients start new requests (default 60)")
    ap.add_argument("--stream-share", type=float, default=0.3, help="share of streamed requests (default 0.3)")
    ap.add_argument("--chat-share", type=float, default=0.2, help="share of chat requests (default 0.2)")
    ap.add_argument("--timeout", type=float, default=600, help="per-request socket timeout, s (default 600)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="markdown file (default benchmarks/results/serve-load-<model>-<date>.md)")
    ap.add_argument("--no-write", action="store_true", help="print the table, write no file")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the offline baseline (etx bench at --batch, greedy and entropix, before the load)")
    args = ap.parse_args()
    baseline = None if args.url or args.no_baseline else bench_baseline(args)

    headers = {"Authorization": "Bearer " + args.api_key} if args.api_key else {}
    proc = None
    if args.url:
        u = urllib.parse.urlparse(args.url)
        host, port = u.hostname, u.port or 80
        name = args.model_name
        if not name:
            c = http.client.HTTPConnection(host, port, timeout=10)
            c.request("GET", "/v1/models", headers=headers)
            name = json.loads(c.getresponse().read())["data"][0]["id"]
        server_cmd = "(attached to %s)`" % args.url
    else:
        proc, host, port, name, cmd = start_server(args)
        server_cmd = " ".join(shlex.quote(x) for x in cmd)
        try:
            version = subprocess.run([args.etx, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
            server_cmd += "` (%s)" % version if version else "`"
        except (OSError, subprocess.TimeoutExpired):
            server_cmd += "`"
    print("serve_load: %d clients for %.0f s against %s:%d (model %s)" % (args.clients, args.seconds, host, port, name),
          file=sys.stderr)

    stats = Stats()
    peak = {"running": 0, "queued": 0, "kv_blocks_used": 0}
    sampling = threading.Event()

    def sampler():
        while not sampling.is_set():
            h = health(host, port, headers)
            if h:
                for k in peak:
                    if isinstance(h.get(k), int):
                        peak[k] = max(peak[k], h[k])
            sampling.wait(1.0)

    threading.Thread(target=sampler, daemon=True).start()
    t_start = time.time()
    stop_at = t_start + args.seconds
    clients = [Client(i, args, host, port, name, stats, stop_at, headers) for i in range(args.clients)]
    for c in clients:
        c.start()
    last_print = t_start
    while any(c.is_alive() for c in clients):
        time.sleep(0.5)
        if time.time() - last_print >= 10:
            last_print = time.time()
            print("serve_load: %5.0f s: %d done, %d lost, %d x 429, %d tokens" % (
                last_print - t_start, stats.done, stats.lost, stats.r429, stats.gen_tokens), file=sys.stderr)
    t_end = time.time()
    sampling.set()
    after = health(host, port, headers)

    rc_server = None
    if proc is not None:
        proc.send_signal(signal.SIGTERM)
        try:
            rc_server = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc_server = "killed after 60 s"

    wall = t_end - t_start
    rows = [
        ("requests completed", "%d" % stats.done),
        ("lost requests", "%d" % stats.lost),
        ("inconsistent repeats (same prompt, policy, seed: other text)", "%d" % len(stats.inconsistent)),
        ("429 answers (retried)", "%d" % stats.r429),
        ("repeats checked (same prompt, policy, seed, max_tokens)", "%d" % (stats.done - len(stats.texts))),
        ("greedy answers compared (shorter a prefix of longer)", "%d" % sum(len(v) for v in stats.greedy.values())),
        ("streamed / chat requests", "%d / %d" % (stats.streams, stats.chats)),
        ("finish reasons", ", ".join("%s %d" % kv for kv in sorted(stats.finish.items()))),
        ("wall time (s)", "%.1f" % wall),
        ("requests/s", "%.2f" % (stats.done / wall if wall else 0)),
        ("generated tokens", "%d" % stats.gen_tokens),
        ("generated tokens/s", "%.1f" % (stats.gen_tokens / wall if wall else 0)),
        ("prompt tokens", "%d" % stats.prompt_tokens),
    ]
    if baseline:
        for pol, tok_s in sorted(baseline.items()):
            rows.append(("offline decode tokens/s, %s at batch %d (etx bench, same script); served / offline" % (
                pol, args.batch), "%.1f; %.2f" % (tok_s, (stats.gen_tokens / wall if wall else 0) / tok_s)))
    rows += [
        ("latency p50 / p90 / p99 (s)", "%.2f / %.2f / %.2f" % (pct(stats.lat, 50), pct(stats.lat, 90), pct(stats.lat, 99))),
        ("stream latency p50 / p99 (s)", "%.2f / %.2f" % (pct(stats.lat_stream, 50), pct(stats.lat_stream, 99))),
        ("time to first token p50 / p99 (s, streams)", "%.2f / %.2f" % (pct(stats.ttft, 50), pct(stats.ttft, 99))),
        ("peak /health running / queued / kv_blocks_used", "%d / %d / %d" % (peak["running"], peak["queued"], peak["kv_blocks_used"])),
        ("/health after the run", json.dumps(after)),
        ("server exit status after SIGTERM", "%s" % (rc_server if proc is not None else "(attached)")),
    ]
    date = datetime.date.today().isoformat()
    model_slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    lines = [
        "# etx serve load test, %s, %s" % (name, date),
        "",
        "Machine: %s. Commit: %s." % (machine(), commit()),
        "",
        "    %s" % " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]),
        "",
        "Server: `%s" % server_cmd,
        "",
        "%d concurrent clients (threads, keep-alive connections, on the same machine as the server) for %.0f s: "
        "completions of mixed prompts (%d plain, %d chat), max_tokens 16..64 (16, 24, 32, 48, 64), %.0f%% streamed, greedy / seeded "
        "sampling / seeded entropix, half with ignore_eos. Every answer checked (status, text, usage, "
        "finish_reason; repeats of one prompt, policy and seed must give one text); a 429 is retried after "
        "Retry-After." % (args.clients, args.seconds, len(PROMPTS), len(CHAT), 100 * args.stream_share),
        "",
        "| measure | value |",
        "|---|---:|",
    ] + ["| %s | %s |" % r for r in rows]
    if stats.lost_reasons:
        lines += ["", "Lost requests, by reason:", ""] + ["- %d x %s" % (n, why) for why, n in
                                                         sorted(stats.lost_reasons.items(), key=lambda x: -x[1])]
    if stats.inconsistent:
        lines += ["", "Inconsistent repeats (first 10):", ""] + ["- %s" % s for s in stats.inconsistent[:10]]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        out = args.out or os.path.join(HERE, "results", "serve-load-%s-%s.md" % (model_slug, date))
        with open(out, "w") as f:
            f.write(text)
        print("serve_load: wrote %s" % out, file=sys.stderr)
    ok = stats.lost == 0 and not stats.inconsistent and stats.done > 0 and rc_server in (0, None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
