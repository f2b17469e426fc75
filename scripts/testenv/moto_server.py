#!/usr/bin/env python3
"""moto's server (STS, ECR, IAM) for the integration tests, with two small changes and a call log.

What differs from `moto_server -H 127.0.0.1 -p PORT`, and why:

1. With authentication on, moto answers an *unsigned* STS `AssumeRoleWithWebIdentity` with HTTP 500: its
   authenticator reads the `Authorization` header of every request, but AWS takes this one action unsigned
   (the web identity token is the credential). Here exactly that case -- STS, action
   AssumeRoleWithWebIdentity, no `Authorization` header -- skips authentication. Every other request,
   ECR's above all, still goes through moto's SigV4 check (botocore's signer), session token check and IAM
   policy evaluation. moto does not validate the web identity token either way.
2. It binds the port itself (`--port 0` picks a free one) and prints `READY port=N` once it accepts
   connections, so the test harness needs no port guessing and no polling; `--watch-pid PID` stops it when
   process PID is gone, so a test run that dies leaves no server behind.

The call log: every AWS API request (not `/moto-api/...`) is recorded with its action, HTTP status, role ARN and
role session name -- for STS from the request form, for signed requests from the assumed role whose access
key signed it. `GET /ipsp/calls` returns them as JSON; `POST /ipsp/calls/reset` clears them. Tests count
STS calls with it. Tokens, keys and signatures are never recorded or logged.

Authentication is switched on by the caller after seeding IAM, as with plain moto: `POST /moto-api/reset-auth`.
"""

import argparse
import io
import json
import os
import signal
import sys
import threading
import time
import urllib.parse

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse
from werkzeug.serving import make_server

MAX_CALLS = 100_000
CALLS_PATH = "/ipsp/calls"


def allow_unsigned_assume_role_with_web_identity():
    """Change 1: let the unsigned AssumeRoleWithWebIdentity through, and nothing else."""
    authenticate = TokenResponse._authenticate_and_authorize_normal_action

    def patched(self, resource="*"):
        if self._get_action() == "AssumeRoleWithWebIdentity" and "Authorization" not in self.headers:
            return
        authenticate(self, resource)

    TokenResponse._authenticate_and_authorize_normal_action = patched


def assumed_role_of(access_key_id):
    """The (role ARN, session name) of the STS session that owns `access_key_id`, or (None, None)."""
    try:
        for account in list(sts_backends.keys()):
            for partition in list(sts_backends[account].keys()):
                role = sts_backends[account][partition].get_assumed_role_from_access_key(access_key_id)
                if role is not None:
                    return role.role_arn, role.session_name
    except Exception:  # moto's internals may change; the log is a test aid, not worth a failed request
        pass
    return None, None


class CallLog:
    """WSGI middleware that records each API call and serves the record at /ipsp/calls."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.calls = []

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == CALLS_PATH and environ["REQUEST_METHOD"] == "GET":
            with self.lock:
                return self._json(start_response, self.calls)
        if path == CALLS_PATH + "/reset" and environ["REQUEST_METHOD"] == "POST":
            with self.lock:
                self.calls = []
            return self._json(start_response, [])
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)

        body = self._read_body(environ)
        call = self._describe(environ, body)
        status = []

        def recording_start_response(status_line, headers, exc_info=None):
            status.append(int(status_line.split(" ", 1)[0]))
            return start_response(status_line, headers, exc_info)

        result = self.app(environ, recording_start_response)
        if call["action"]:
            call["status"] = status[0] if status else None
            if call["role_arn"] is None and call["access_key_id"]:
                call["role_arn"], call["session_name"] = assumed_role_of(call["access_key_id"])
            del call["access_key_id"]
            with self.lock:
                if len(self.calls) < MAX_CALLS:
                    self.calls.append(call)
        return result

    @staticmethod
    def _read_body(environ):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        return body

    @staticmethod
    def _describe(environ, body):
        """Action, role and session of a request, from its form (query API) or X-Amz-Target (JSON API)."""
        fields = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            fields.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        action = target.rsplit(".", 1)[-1] if target else fields.get("Action")
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        access_key_id = None
        if "Credential=" in authorization:
            access_key_id = authorization.split("Credential=", 1)[1].split("/", 1)[0]
        return {
            "time": time.time(),
            "action": action,
            "signed": bool(authorization),
            "role_arn": fields.get("RoleArn"),
            "session_name": fields.get("RoleSessionName"),
            "access_key_id": access_key_id,
        }

    @staticmethod
    def _json(start_response, value):
        data = json.dumps(value).encode("utf-8")
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


def watch(pid, stop):
    """Sets `stop` once process `pid` no longer exists."""
    while not stop.wait(0.5):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop.set()
        except PermissionError:
            pass  # It exists, under another user.


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    parser.add_argument("--watch-pid", type=int, help="stop when this process is gone")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost"):
        parser.error("only 127.0.0.1 is served")

    allow_unsigned_assume_role_with_web_identity()
    app = CallLog(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)
    server.daemon_threads = True

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.watch_pid:
        threading.Thread(target=watch, args=(args.watch_pid, stop), daemon=True).start()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    print(f"READY port={server.server_port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    sys.stderr.write("moto_server: stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
