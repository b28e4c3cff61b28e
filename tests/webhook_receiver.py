"""A webhook receiver for the integration tests: verifies every delivery
with the `standardwebhooks` package (the Standard Webhooks reference
library) and logs it as one JSON line.

    python webhook_receiver.py --secret whsec_... --log deliveries.jsonl [--fail-first N]

Listens on 127.0.0.1 at a free port and prints `listening PORT` once ready.
Answers 500 to the first N deliveries (whatever they hold), then 401 to one
that does not verify and 200 to one that does. Each log line:
{"n", "answered", "verified", "error", "webhook_id", "type", "body"}.
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    webhook = Webhook(args.secret)
    lock = Lock()
    state = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with lock:
                state["n"] += 1
                n = state["n"]
            try:
                webhook.verify(body, headers)
                verified, error = True, None
            except WebhookVerificationError as e:
                verified, error = False, str(e)
            if n <= args.fail_first:
                answered = 500
            else:
                answered = 200 if verified else 401
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            line = {
                "n": n,
                "answered": answered,
                "verified": verified,
                "error": error,
                "webhook_id": headers.get("webhook-id"),
                "type": (parsed or {}).get("type"),
                "body": parsed,
            }
            with lock, open(args.log, "a") as log:
                log.write(json.dumps(line) + "\n")
            self.send_response(answered)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
