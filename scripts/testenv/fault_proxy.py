#!/usr/bin/env python3
"""A TCP fault proxy: the faults a cloud network really has, made on demand between a client and one upstream.

It forwards every connection accepted on 127.0.0.1 to `--upstream HOST:PORT` and, when told so through its control
port, makes the faults that load balancers, NAT gateways and partitions make without telling either end:

- `freeze`: every connection open now goes silent in both directions. Nothing is closed, no FIN and no RST is sent;
  the proxy simply stops reading, so the kernel keeps acknowledging what arrives until the receive window is full —
  what a client sees when a load balancer forgot its flow. Connections accepted later work (new flows do).
- `thaw`: the frozen connections flow again (what was held back is delivered).
- `blackhole`: from now on new connections are accepted and then never answered (no upstream connection is made, no
  byte comes back): a partition as a client sees it. `open` ends it for connections accepted afterwards; the
  black-holed ones stay silent until the proxy exits.
- `partition`: `freeze` and `blackhole` at once. `heal` is `thaw` and `open`.
- `reset`: every open connection is closed with an RST to both ends (SO_LINGER 0).
- `latency?ms=N`: each chunk, in either direction, is forwarded N ms after it arrived.
- `pieces?on=1`: each chunk from the upstream is written to the client in two `send` calls — an HTTP answer's head
  and its body, or the two halves of a chunk with no head — with Nagle's algorithm left on (no TCP_NODELAY), as some
  forwarding proxies and endpoints write. A client that waits for the second piece while delaying its ACK of the
  first stalls for the delayed-ACK time; one that reads well pays nothing.

Control: HTTP on 127.0.0.1 (`--control-port`), `POST /freeze` (and the others above) answers `{"ok": true}`;
`GET /stats` answers the counts (accepted, open, frozen, blackholed, reset, split_writes, bytes up and down).
One log line per control request and per connection on stderr.

Prints `CONTROL port=M`, then `READY port=N` (the proxy's own port) on stdout once both accept connections; exits on SIGTERM or SIGINT, and with
`--watch-pid PID` once process PID is gone (serving.py's life cycle). Only the Python standard library.
"""

import argparse
import http.server
import socket
import struct
import sys
import threading
import time
import urllib.parse

import serving

CHUNK = 65536


def log(message):
    sys.stderr.write(f"fault-proxy {time.time():.3f} {message}\n")
    sys.stderr.flush()


def split_point(data):
    """Where a chunk from the upstream is cut in `pieces` mode: after an HTTP head, else in the middle."""
    head_end = data.find(b"\r\n\r\n")
    if 0 <= head_end < len(data) - 4:
        return head_end + 4
    return len(data) // 2 if len(data) > 1 else 0


class Link:
    """One client connection and its upstream; two pump threads move bytes while the link flows."""

    def __init__(self, proxy, client, number):
        self.proxy = proxy
        self.client = client
        self.upstream = None
        self.number = number
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()

    def start(self):
        try:
            self.upstream = socket.create_connection(self.proxy.upstream, timeout=10)
            self.upstream.settimeout(None)
        except OSError as error:
            log(f"connection {self.number}: upstream {self.proxy.upstream}: {error}")
            self.close()
            return
        for source, target, direction in (
            (self.client, self.upstream, "up"),
            (self.upstream, self.client, "down"),
        ):
            threading.Thread(
                target=self.pump, args=(source, target, direction), daemon=True,
                name=f"link-{self.number}-{direction}",
            ).start()

    def pump(self, source, target, direction):
        try:
            while not self.closed.is_set():
                self.flowing.wait()
                if self.closed.is_set():
                    return
                data = source.recv(CHUNK)
                if not data:
                    break
                delay = self.proxy.latency
                if delay > 0:
                    time.sleep(delay)
                # A chunk read just before a freeze is held back too: nothing crosses a frozen link.
                self.flowing.wait()
                if self.closed.is_set():
                    return
                if direction == "down" and self.proxy.pieces:
                    cut = split_point(data)
                    if cut:
                        target.sendall(data[:cut])
                        target.sendall(data[cut:])
                        self.proxy.count("split_writes")
                    else:
                        target.sendall(data)
                else:
                    target.sendall(data)
                self.proxy.count("bytes_" + direction, len(data))
            # One side finished its writing: pass the half-close on, so HTTP/1.0-style answers still end.
            try:
                target.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        except OSError:
            self.close()

    def freeze(self):
        self.flowing.clear()

    def thaw(self):
        self.flowing.set()

    def reset(self):
        for sock in (self.client, self.upstream):
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
        self.close()

    def close(self):
        if self.closed.is_set():
            return
        self.closed.set()
        self.flowing.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self.proxy.forget(self)


class Proxy:
    def __init__(self, upstream):
        self.upstream = upstream
        self.lock = threading.Lock()
        self.links = set()
        self.held = []  # black-holed client sockets, kept open and unread
        self.blackhole = False
        self.latency = 0.0
        self.pieces = False
        self.stats = {
            "accepted": 0, "blackholed": 0, "reset": 0, "split_writes": 0, "bytes_up": 0, "bytes_down": 0,
        }
        self.connections = 0

    def count(self, name, amount=1):
        with self.lock:
            self.stats[name] += amount

    def forget(self, link):
        with self.lock:
            self.links.discard(link)

    def accept(self, client):
        with self.lock:
            self.connections += 1
            number = self.connections
            self.stats["accepted"] += 1
            if self.blackhole:
                self.stats["blackholed"] += 1
                self.held.append(client)
                log(f"connection {number}: black-holed")
                return
            link = Link(self, client, number)
            self.links.add(link)
        link.start()

    def serve(self, listener, stop):
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            self.accept(client)

    def control(self, action, query):
        with self.lock:
            links = list(self.links)
        if action in ("freeze", "partition"):
            for link in links:
                link.freeze()
        if action in ("thaw", "heal"):
            for link in links:
                link.thaw()
        if action in ("blackhole", "partition"):
            with self.lock:
                self.blackhole = True
        if action in ("open", "heal"):
            with self.lock:
                self.blackhole = False
        if action == "reset":
            for link in links:
                link.reset()
            self.count("reset", len(links))
        if action == "latency":
            self.latency = max(0.0, float(query.get("ms", ["0"])[0]) / 1000.0)
        if action == "pieces":
            self.pieces = query.get("on", ["1"])[0] not in ("0", "false", "off")
        log(f"control {action} {dict(query)} ({len(links)} open)")

    def snapshot(self):
        with self.lock:
            frozen = sum(1 for link in self.links if not link.flowing.is_set())
            return dict(
                self.stats, open=len(self.links), frozen=frozen, held=len(self.held),
                blackhole=self.blackhole, latency_ms=round(self.latency * 1000), pieces=self.pieces,
            )


ACTIONS = {"freeze", "thaw", "blackhole", "open", "partition", "heal", "reset", "latency", "pieces"}


def control_handler(proxy):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            if urllib.parse.urlsplit(self.path).path == "/stats":
                self._send(200, proxy.snapshot())
            else:
                self._send(404, {"error": "not found: GET /stats"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            url = urllib.parse.urlsplit(self.path)
            action = url.path.strip("/")
            if action not in ACTIONS:
                self._send(404, {"error": f"unknown action {action!r}: one of {sorted(ACTIONS)}"})
                return
            try:
                proxy.control(action, urllib.parse.parse_qs(url.query))
            except ValueError as error:
                self._send(400, {"error": str(error)})
                return
            self._send(200, {"ok": True})

        def _send(self, status, payload):
            serving.send_json(self, status, payload)

    return Handler


def parse_upstream(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--upstream wants HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=parse_upstream, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--port", type=int, default=0, help="port to accept on (127.0.0.1)")
    parser.add_argument("--control-port", type=int, default=0, help="port of the control API (127.0.0.1)")
    parser.add_argument("--watch-pid", type=int, help="stop once the process with this ID is gone")
    args = parser.parse_args(argv)

    proxy = Proxy(args.upstream)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((serving.LOOPBACK, args.port))
    listener.listen(128)
    control = serving.serve_in_background(
        http.server.ThreadingHTTPServer((serving.LOOPBACK, args.control_port), control_handler(proxy))
    )
    stop = threading.Event()
    threading.Thread(target=proxy.serve, args=(listener, stop), daemon=True, name="accept").start()
    ready = [f"CONTROL port={control.server_address[1]}", f"READY port={listener.getsockname()[1]}"]
    try:
        return serving.run("fault-proxy", [control], ready, watch_pid=args.watch_pid)
    finally:
        stop.set()
        listener.close()


if __name__ == "__main__":
    sys.exit(main())
