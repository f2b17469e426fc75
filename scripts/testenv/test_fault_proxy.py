"""Self-tests of fault_proxy.py: each fault as a client sees it, against a real upstream on 127.0.0.1.

Run from scripts/testenv: `python3 -m unittest -q test_fault_proxy`.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


class Upstream:
    """An echo server; a line `HTTP` instead answers with an HTTP response written in one send."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.echo, args=(conn,), daemon=True).start()

    def echo(self, conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if data == b"HTTP\n":
                    body = b"x" * 100
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + body)
                else:
                    conn.sendall(data)

    def close(self):
        self.listener.close()


class FaultProxyTest(unittest.TestCase):
    def setUp(self):
        self.upstream = Upstream()
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fault_proxy.py"), "--upstream", f"127.0.0.1:{self.upstream.port}",
             "--watch-pid", str(os.getpid())],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        control = self.process.stdout.readline()
        ready = self.process.stdout.readline()
        self.assertTrue(control.startswith("CONTROL port="), control)
        self.assertTrue(ready.startswith("READY port="), ready)
        self.control_port = int(control.split("=")[1])
        self.port = int(ready.split("=")[1])
        self.sockets = []

    def tearDown(self):
        for sock in self.sockets:
            sock.close()
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process.stdout.close()
        self.upstream.close()

    def connect(self, timeout=2.0):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        self.sockets.append(sock)
        return sock

    def control(self, action):
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}/{action}", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            self.assertEqual(json.load(answer), {"ok": True})

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}/stats", timeout=5) as answer:
            return json.load(answer)

    def round_trip(self, sock, data=b"ping\n"):
        sock.sendall(data)
        received = b""
        while len(received) < len(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received

    def test_forwards_both_ways(self):
        self.assertEqual(self.round_trip(self.connect()), b"ping\n")
        self.assertEqual(self.stats()["bytes_up"], 5)

    def test_freeze_silences_open_connections_while_new_ones_work(self):
        frozen = self.connect(timeout=0.5)
        self.assertEqual(self.round_trip(frozen), b"ping\n")
        self.control("freeze")
        frozen.sendall(b"held\n")
        with self.assertRaises(socket.timeout):
            frozen.recv(100)
        fresh = self.connect()
        self.assertEqual(self.round_trip(fresh, b"new\n"), b"new\n")
        self.assertEqual(self.stats()["frozen"], 1)
        self.control("thaw")
        frozen.settimeout(2.0)
        self.assertEqual(frozen.recv(100), b"held\n")

    def test_frozen_connection_is_not_closed(self):
        frozen = self.connect(timeout=0.5)
        self.round_trip(frozen)
        self.control("freeze")
        # No FIN: a read times out instead of returning b"", and writes are still accepted by the kernel.
        with self.assertRaises(socket.timeout):
            frozen.recv(100)
        frozen.sendall(b"y" * 1000)

    def test_blackhole_accepts_and_never_answers(self):
        self.control("blackhole")
        before = self.upstream.accepted
        hole = self.connect(timeout=0.5)
        hole.sendall(b"ping\n")
        with self.assertRaises(socket.timeout):
            hole.recv(100)
        self.assertEqual(self.upstream.accepted, before)
        self.control("open")
        self.assertEqual(self.round_trip(self.connect()), b"ping\n")
        self.assertEqual(self.stats()["blackholed"], 1)

    def test_partition_and_heal(self):
        old = self.connect(timeout=0.5)
        self.round_trip(old)
        self.control("partition")
        new = self.connect(timeout=0.5)
        new.sendall(b"ping\n")
        with self.assertRaises(socket.timeout):
            new.recv(100)
        old.sendall(b"ping\n")
        with self.assertRaises(socket.timeout):
            old.recv(100)
        self.control("heal")
        old.settimeout(2.0)
        self.assertEqual(old.recv(100), b"ping\n")
        self.assertEqual(self.round_trip(self.connect()), b"ping\n")

    def test_reset_sends_rst(self):
        sock = self.connect()
        self.round_trip(sock)
        self.control("reset")
        with self.assertRaises((ConnectionResetError, BrokenPipeError)):
            for _ in range(20):
                sock.sendall(b"ping\n")
                if not sock.recv(100):
                    self.fail("the connection ended with FIN, not RST")
                time.sleep(0.05)

    def test_latency_delays_each_chunk(self):
        sock = self.connect()
        self.control("latency?ms=300")
        started = time.monotonic()
        self.assertEqual(self.round_trip(sock), b"ping\n")
        self.assertGreaterEqual(time.monotonic() - started, 0.55)  # 300 ms up and 300 ms down
        self.control("latency?ms=0")
        started = time.monotonic()
        self.round_trip(sock)
        self.assertLess(time.monotonic() - started, 0.25)

    def test_pieces_writes_head_and_body_apart(self):
        self.control("pieces?on=1")
        sock = self.connect()
        sock.sendall(b"HTTP\n")
        received = b""
        while not received.endswith(b"x" * 100):
            chunk = sock.recv(65536)
            self.assertTrue(chunk)
            received += chunk
        self.assertTrue(received.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertEqual(self.stats()["split_writes"], 1)

    def test_unknown_action_is_refused(self):
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}/explode", data=b"", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        self.assertEqual(refused.exception.code, 404)


if __name__ == "__main__":
    unittest.main()
