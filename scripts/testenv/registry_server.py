#!/usr/bin/env python3
"""A real OCI registry (the `distribution` registry, built by build-registry) for pull tests, behind TLS and
htpasswd authentication, holding one small image.

It accepts exactly the credentials it is given -- in the tests, the ones the provider stand-ins issue: user
`oauth2accesstoken` with the Google stand-in's access token (see its --access-token-file), user `AWS` with the
password in moto's ECR authorization token -- and nothing else.

    registry_server.py --registry-bin PATH --dir DIR --user NAME=PASSWORD_FILE [--user ...]
                       [--image REPO:TAG] [--token-auth] [--port 0] [--watch-pid PID]

With --token-auth the registry uses token authentication instead of htpasswd, as Artifact Registry and Docker
Hub do: it answers `WWW-Authenticate: Bearer realm=...`, and a token service started here (HTTPS, same CA)
exchanges the users' Basic credentials for short JWTs (ES256, trusted by the registry through a JWKS file)
granting the scope asked for.

Writes DIR/ca.crt (the CA that signed the registry's certificate for 127.0.0.1: give it to clients as a CA
bundle), DIR/htpasswd (bcrypt, which is all the registry takes), DIR/config.yml, then starts the registry, pushes
--image (one tiny layer, an OCI manifest) with the first user's credentials, and prints `READY port=N`.
Passwords are read from files so they appear on no command line; they are never logged.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings

with warnings.catch_warnings():
    # crypt(3) is the one bcrypt implementation at hand (glibc's libxcrypt); the module warns of its removal
    # in Python 3.13, after which this launcher needs the `bcrypt` package instead.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testca  # noqa: E402  (the stand-ins' shared test CA)

import serving  # the stand-ins' shared life cycle (this directory)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_certificates(directory):
    """A CA and, signed by it, a serving certificate for 127.0.0.1 and localhost."""
    testca.write_ca_and_server(
        directory, "ipsp-test-registry-ca", "ipsp-test-registry", dns_names=["localhost"],
        lifetime=datetime.timedelta(days=7), cert_name="registry.crt", key_name="registry.key",
    )


def bcrypt(password):
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
    if not hashed or not hashed.startswith("$2"):
        raise SystemExit("registry_server: this system's crypt(3) cannot make bcrypt hashes")
    return hashed


TOKEN_ISSUER = "ipsp-test-token-service"
SERVICE = "ipsp-test-registry"
KEY_ID = "ipsp-test-token-key"


def start_token_service(directory, users, context):
    """The realm of token authentication: Basic credentials in, a JWT for the asked scope out."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": KEY_ID, "use": "sig", "alg": "ES256"})
    with open(os.path.join(directory, "token-jwks.json"), "w", encoding="utf-8") as f:
        json.dump({"keys": [jwk]}, f)
    known = dict(users)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            user = None
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                try:
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    name, password = "", ""
                wanted = known.get(name)
                if wanted is not None and hmac.compare_digest(wanted.encode(), password.encode()):
                    user = name
            if url.path != "/token" or user is None:
                return self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
            access = []
            for scope in query.get("scope", "").split():
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            claims = {
                "iss": TOKEN_ISSUER,
                "sub": user,
                "aud": query.get("service", ""),
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": secrets.token_hex(8),
                "access": access,
            }
            token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": KEY_ID})
            self._send(200, {"token": token, "access_token": token, "expires_in": 300})

        def _send(self, status, payload):
            serving.send_json(self, status, payload)

        def log_message(self, format, *args):
            sys.stderr.write("token-service: %s\n" % (format % args))

    return serving.serve_in_background(serving.wrap_tls(ThreadingHTTPServer((serving.LOOPBACK, 0), Handler), context))


class Client:
    """Just enough of the registry API to push one image, with Basic authentication."""

    def __init__(self, base, user, password, ca_file, token_realm=None, repository=None):
        self.base = base
        self.context = ssl.create_default_context(cafile=ca_file)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.authorization = f"Basic {token}"
        if token_realm:
            scope = urllib.parse.quote(f"repository:{repository}:pull,push")
            _, _, body = self.request("GET", f"{token_realm}?service={SERVICE}&scope={scope}")
            self.authorization = "Bearer " + json.loads(body)["token"]

    def request(self, method, url, body=None, content_type=None):
        if not url.startswith("http"):
            url = self.base + url
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("Authorization", self.authorization)
        if content_type:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
            return response.status, dict(response.headers), response.read()

    def push_blob(self, repository, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _, headers, _ = self.request("POST", f"/v2/{repository}/blobs/uploads/", b"")
        location = headers["Location"]
        separator = "&" if "?" in location else "?"
        self.request("PUT", f"{location}{separator}digest={digest}", data, "application/octet-stream")
        return digest

    def push_image(self, repository, tag):
        layer = b"ipsp test layer\n"
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": self.push_blob(repository, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": self.push_blob(repository, layer),
                    "size": len(layer),
                }
            ],
        }
        self.request(
            "PUT",
            f"/v2/{repository}/manifests/{tag}",
            json.dumps(manifest).encode(),
            "application/vnd.oci.image.manifest.v1+json",
        )


def die_with_parent():
    """In the registry's process: get SIGTERM when this launcher dies, even by SIGKILL (Linux prctl)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_until_serving(port, process, deadline):
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"registry_server: the registry exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("registry_server: the registry did not start listening")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--registry-bin", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--user", action="append", default=[], metavar="NAME=PASSWORD_FILE", required=True)
    parser.add_argument("--image", default="test/app:1", metavar="REPO:TAG")
    parser.add_argument("--token-auth", action="store_true", help="token authentication instead of htpasswd")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--watch-pid", type=int)
    args = parser.parse_args(argv)

    directory = os.path.abspath(args.dir)
    os.makedirs(directory, exist_ok=True)
    users = []
    for item in args.user:
        name, _, path = item.partition("=")
        with open(path, encoding="utf-8") as f:
            password = f.read().strip()
        if not name or not password:
            parser.error(f"--user {name!r}: expected NAME=PASSWORD_FILE with a non-empty file")
        users.append((name, password))
    write_certificates(directory)
    with open(os.path.join(directory, "htpasswd"), "w", encoding="utf-8") as f:
        for name, password in users:
            f.write(f"{name}:{bcrypt(password)}\n")
    port = args.port or free_port()
    config = f"""version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {directory}/data
http:
  addr: 127.0.0.1:{port}
  secret: {secrets.token_hex(16)}
  tls:
    certificate: {directory}/registry.crt
    key: {directory}/registry.key
"""
    token_realm = None
    servers = []
    if args.token_auth:
        context = serving.tls_context(os.path.join(directory, "registry.crt"), os.path.join(directory, "registry.key"))
        token_service = start_token_service(directory, users, context)
        servers.append(token_service)
        token_realm = f"https://127.0.0.1:{token_service.server_address[1]}/token"
        config += f"""auth:
  token:
    realm: {token_realm}
    service: {SERVICE}
    issuer: {TOKEN_ISSUER}
    jwks: {directory}/token-jwks.json
"""
    else:
        config += f"""auth:
  htpasswd:
    realm: ipsp-test-registry
    path: {directory}/htpasswd
"""
    with open(os.path.join(directory, "config.yml"), "w", encoding="utf-8") as f:
        f.write(config)
    log = open(os.path.join(directory, "registry.log"), "ab")
    process = subprocess.Popen(
        [args.registry_bin, "serve", os.path.join(directory, "config.yml")],
        preexec_fn=die_with_parent,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env={"PATH": os.environ.get("PATH", ""), "OTEL_TRACES_EXPORTER": "none"},
    )

    def registry_exited():
        if process.poll() is None:
            return None
        sys.stderr.write(f"registry_server: the registry exited with {process.returncode}\n")
        return 1

    try:
        wait_until_serving(port, process, time.monotonic() + 30)
        repository, _, tag = args.image.rpartition(":")
        name, password = users[0]
        Client(
            f"https://127.0.0.1:{port}", name, password, os.path.join(directory, "ca.crt"), token_realm, repository
        ).push_image(repository, tag)
        return serving.run("registry_server", servers, [f"READY port={port}"], args.watch_pid, poll=registry_exited)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
