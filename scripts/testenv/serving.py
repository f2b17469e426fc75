"""The stand-ins' shared life cycle: serve on 127.0.0.1, say so on stdout, stop on a signal or with the parent.

Every stand-in (google_fake.py, azure_fake.py, moto_server.py, throttling_webhook.py, registry_server.py) is started
by the tests or the scripts as a child process that:
- binds 127.0.0.1 only, on the port asked for (0 picks a free one);
- prints one line per listener once it serves, the last one `READY port=N` (the launchers wait for that line);
- serves HTTPS, where it must, with a certificate from testca.py ([`tls_context`], [`wrap_tls`]);
- stops on SIGTERM or SIGINT, or once the process given as `--watch-pid` is gone, so that a test run that dies
  leaves nothing behind; then shuts its servers down and returns its exit status.
"""

import json
import os
import signal
import ssl
import sys
import threading

LOOPBACK = "127.0.0.1"


def require_loopback(parser, host):
    """Refuses (as an argparse usage error) to bind anything but the loopback address."""
    if host not in (LOOPBACK, "localhost"):
        parser.error(f"only {LOOPBACK} is served")


def tls_context(cert_path, key_path):
    """A server-side TLS context for a certificate and its key (e.g. from testca.write_ca_and_server)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def wrap_tls(server, context):
    """Makes `server` (a socketserver, before it serves) speak TLS with `context`."""
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def send_json(handler, status, payload):
    """Answers an http.server request handler's request with `payload` as JSON."""
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def serve_in_background(server):
    """Serves `server` (with daemon threads per request) on a daemon thread; returns the server."""
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return server


def watch(pid, stop, interval=0.5):
    """Sets `stop` once process `pid` no longer exists."""
    while not stop.wait(interval):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop.set()
        except PermissionError:
            pass  # It exists, under another user.


def run(name, servers, ready, watch_pid=None, poll=None):
    """Prints the `ready` lines and waits until it is told to stop; returns the exit status.

    `servers` already serve ([`serve_in_background`]). It stops on SIGTERM or SIGINT, once process `watch_pid`
    is gone, or when `poll()` (called every half second) returns an exit status instead of None. The servers
    are shut down and closed either way, and `NAME: stopped` goes to stderr.
    """
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if watch_pid:
        threading.Thread(target=watch, args=(watch_pid, stop), daemon=True).start()
    for line in ready:
        print(line, flush=True)
    status = 0
    try:
        while not stop.wait(0.5):
            if poll is not None:
                result = poll()
                if result is not None:
                    status = result
                    break
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        sys.stderr.write(f"{name}: stopped\n")
        sys.stderr.flush()
    return status
