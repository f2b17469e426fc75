#!/usr/bin/env python3
"""A validating admission webhook that makes the real kube-apiserver throttle: it denies the first N requests
it is asked about with code 429 and `details.retryAfterSeconds`, which the apiserver turns into an HTTP 429 with
a `Retry-After` header (as for priority-and-fairness rejections), then allows everything.

Only the Python standard library; serves HTTPS (the apiserver calls webhooks over TLS only) with the
certificate and key given. Logs one line per admission request on stderr:
`admission <unix time> <operation> <namespace>/<name> <allowed|denied>`.

Prints `READY port=N` on stdout once it accepts connections; exits on SIGTERM or SIGINT, and with
`--watch-pid PID` once process PID is gone.
"""

import argparse
import http.server
import json
import sys
import threading
import time

import serving  # the stand-ins' shared life cycle (this directory)


class State:
    def __init__(self, deny, retry_after):
        self.lock = threading.Lock()
        self.deny_left = deny
        self.retry_after = retry_after

    def decide(self):
        with self.lock:
            if self.deny_left > 0:
                self.deny_left -= 1
                return False
            return True


def handler_for(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            try:
                review = json.loads(self.rfile.read(length))
                request = review["request"]
            except (ValueError, KeyError, TypeError):
                self._send(400, {"error": "not an AdmissionReview"})
                return
            allowed = state.decide()
            response = {"uid": request.get("uid", ""), "allowed": allowed}
            if not allowed:
                response["status"] = {
                    "status": "Failure",
                    "code": 429,
                    "reason": "TooManyRequests",
                    "message": "throttled by the test webhook",
                    "details": {"retryAfterSeconds": state.retry_after},
                }
            name = request.get("name") or (request.get("object") or {}).get("metadata", {}).get("name", "")
            sys.stderr.write(
                f"admission {time.time():.3f} {request.get('operation', '')} "
                f"{request.get('namespace', '')}/{name} {'allowed' if allowed else 'denied'}\n"
            )
            sys.stderr.flush()
            self._send(200, {
                "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
                "kind": "AdmissionReview",
                "response": response,
            })

        def _send(self, status, payload):
            serving.send_json(self, status, payload)

    return Handler


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", required=True, help="PEM certificate (with SAN IP:127.0.0.1)")
    parser.add_argument("--key", required=True, help="PEM private key")
    parser.add_argument("--deny", type=int, default=1, help="how many requests to deny with 429")
    parser.add_argument("--retry-after", type=int, default=3, help="retryAfterSeconds of each denial")
    parser.add_argument("--watch-pid", type=int, help="stop once the process with this ID is gone")
    args = parser.parse_args(argv)
    serving.require_loopback(parser, args.host)

    state = State(args.deny, args.retry_after)
    server = http.server.ThreadingHTTPServer((args.host, args.port), handler_for(state))
    serving.serve_in_background(serving.wrap_tls(server, serving.tls_context(args.cert, args.key)))
    return serving.run("throttling_webhook", [server], [f"READY port={server.server_address[1]}"], args.watch_pid)


if __name__ == "__main__":
    sys.exit(main())
