#!/usr/bin/env python3
"""A strict stand-in for Microsoft Entra ID's token endpoint (client credentials with a federated client
assertion) and Azure Container Registry's token exchange.

No emulator of either exists, so integration tests run against this one. It behaves like the services, not like
our client, and Microsoft's own SDKs (azure-identity, azure-containerregistry) are its self-test clients:

- Entra: `POST /{tenant}/oauth2/v2.0/token`, form-encoded, every field checked. The client assertion (the
  ServiceAccount token) is verified like Entra verifies it: signature with the issuer's keys found through OIDC
  discovery on the real kube-apiserver, `exp`/`nbf` with a small skew, then `iss`, `sub` and `aud` against the
  application's federated identity credentials. Errors have Entra's JSON shape (`error`, `error_description`
  beginning `AADSTS<code>:`, `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`).
- ACR: `POST /oauth2/exchange` accepts only an access token this stand-in issued, for ACR's audience, with
  `service` equal to the registry host and `tenant` (when sent) equal to the token's `tid`; it answers a
  refresh token (a JWT with `exp`). `POST /oauth2/token` (refresh token → access token) and a data-plane
  `GET /acr/v1/_catalog` with the Bearer challenge are served so that azure-containerregistry works end to end.
  Refusals are `{"errors":[{"code":"UNAUTHORIZED","message":...}]}` with 401.

It serves HTTPS with a test CA it creates (`--tls-dir` receives `ca.crt`), on a certificate valid for the real
names (login.microsoftonline.com, .us, login.chinacloudapi.cn, *.azurecr.io/.us/.cn) and 127.0.0.1. A second,
plain-HTTP port is a forward proxy (`CONNECT`): a client with `HTTPS_PROXY` pointing at it reaches the real
host names, which are tunnelled to this stand-in — so a test sees which authority a client chose (the log line
carries the Host header). CONNECT to other loopback ports is tunnelled as is; anything else is refused.

Only loopback addresses are served. No token or assertion is ever logged (stderr, one line per request).

Prints `PROXY port=M` then `READY port=N` on stdout; exits on SIGTERM/SIGINT or when `--watch-pid` is gone.
Test endpoints: `GET /stats` (counters), `GET /log` (the request log lines as JSON), `GET|POST /control`
(latency_ms, failure_rate, failure_status, retry_after, fail_next, refresh_token_lifetime,
access_token_lifetime, now_offset_seconds, reset_stats).
"""

import argparse
import base64
import datetime
import json
import os
import random
import select
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import jwt
    import cryptography  # noqa: F401  (testca needs it; checked here for the error message below)
except ImportError:
    sys.exit("azure_fake: PyJWT and cryptography are required: pip install -r scripts/testenv/requirements.txt")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from google_fake import Jwks, GoogleError  # noqa: E402  (the same OIDC discovery + JWKS client)
import serving  # noqa: E402  (the stand-ins' shared life cycle)
import testca  # noqa: E402  (the stand-ins' shared test CA)

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACR_RESOURCE = "https://containerregistry.azure.net"
DEFAULT_FIC_AUDIENCE = "api://AzureADTokenExchange"
AUTHORITY_HOSTS = ("login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn")
REGISTRY_SUFFIXES = (".azurecr.io", ".azurecr.us", ".azurecr.cn")
CLOCK_SKEW = 300  # Entra allows five minutes.
MAX_BODY_BYTES = 1 << 20
ACCESS_SCOPE = "registry:catalog:*"


class Refusal(Exception):
    def __init__(self, status, body, note, headers=None):
        super().__init__(note)
        self.status, self.body, self.note, self.headers = status, body, note, headers or {}


def entra_error(code, aadsts, text, status=400):
    """Entra's error JSON; the description starts with the AADSTS code and ends with its IDs."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    description = f"AADSTS{aadsts}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {now}"
    return Refusal(
        status,
        {
            "error": code,
            "error_description": description,
            "error_codes": [aadsts],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
        },
        f"{code} AADSTS{aadsts}",
    )


def acr_error(message, status=401, code="UNAUTHORIZED"):
    return Refusal(status, {"errors": [{"code": code, "message": message}]}, f"{code}: {message}")


def make_tls(directory, extra_names):
    """A test CA and a server certificate for the real names; returns (cert path, key path)."""
    names = ["localhost", *AUTHORITY_HOSTS, *("*" + s for s in REGISTRY_SUFFIXES), *extra_names]
    _, cert_path, key_path = testca.write_ca_and_server(directory, "azure_fake test CA", "azure_fake", dns_names=names)
    return cert_path, key_path


class State:
    def __init__(self, args, jwks):
        self.lock = threading.Lock()
        self.issuer = args.issuer
        self.jwks = jwks
        self.tenants = set(t.lower() for t in args.tenant)
        self.apps = {}  # client_id -> tenant
        for item in args.app:
            client_id, _, tenant = item.partition("@")
            self.apps[client_id.lower()] = (tenant or args.tenant[0]).lower()
        self.fics = {}  # client_id -> [(issuer, subject, audience)]
        for item in args.fic:
            client_id, _, subject = item.partition("=")
            self.fics.setdefault(client_id.lower(), []).append((args.issuer, subject, args.fic_audience))
        self.registries = set(args.registry)
        self.no_pull = set(c.lower() for c in args.no_pull)
        self.key = str(uuid.uuid4())  # signs what this stand-in issues
        self.settings = {
            "latency_ms": args.latency_ms,
            "failure_rate": args.failure_rate,
            "failure_status": 503,
            "retry_after": None,
            "fail_next": 0,
            "refresh_token_lifetime": args.refresh_token_lifetime,
            "access_token_lifetime": 3599,
            "now_offset_seconds": 0.0,
        }
        self.log = []
        self.stats = self._zero()

    @staticmethod
    def _zero():
        return {"token_calls": 0, "token_ok": 0, "exchange_calls": 0, "exchange_ok": 0, "acr_token_calls": 0,
                "injected_failures": 0, "rejected": 0, "connects": 0, "responses": {}}

    def now(self):
        with self.lock:
            return time.time() + self.settings["now_offset_seconds"]

    def record(self, kind, status, injected, line):
        with self.lock:
            if kind in ("token", "exchange", "acr_token"):
                self.stats[f"{kind}_calls"] += 1
                if status == 200 and f"{kind}_ok" in self.stats:
                    self.stats[f"{kind}_ok"] += 1
            if injected:
                self.stats["injected_failures"] += 1
            elif 400 <= status < 500:
                self.stats["rejected"] += 1
            self.stats["responses"][str(status)] = self.stats["responses"].get(str(status), 0) + 1
            self.log.append(line)
            del self.log[:-5000]

    def inject(self, kind):
        """A failure to inject for this call, if any: fail_next first, then failure_rate."""
        if kind not in ("token", "exchange"):
            return None
        with self.lock:
            s = self.settings
            if s["fail_next"] > 0:
                s["fail_next"] -= 1
            elif not random.random() < s["failure_rate"]:
                return None
            status, retry_after = s["failure_status"], s["retry_after"]
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if kind == "token":
            error = entra_error("temporarily_unavailable", 50196 if status == 429 else 90033,
                                "The service is temporarily unavailable.", status)
        else:
            error = acr_error("service unavailable", status, "UNAVAILABLE")
        error.headers = headers
        return error

    def sign(self, claims):
        return jwt.encode(claims, self.key, algorithm="HS256")

    def issued(self, token, kind):
        """Claims of a token this stand-in issued of `kind`, or None."""
        try:
            claims = jwt.decode(token, self.key, algorithms=["HS256"], options={"verify_exp": False,
                                                                                 "verify_aud": False})
        except jwt.exceptions.PyJWTError:
            return None
        if claims.get("kind") != kind or claims.get("exp", 0) <= self.now():
            return None
        return claims


def form_fields(handler, body):
    ctype = handler.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (ValueError, UnicodeDecodeError):
        return None
    fields = {}
    for name, value in pairs:
        if name in fields:
            return None
        fields[name] = value
    return fields


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "azure_fake"
    sys_version = ""
    state = None

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method):
        started = time.monotonic()
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        host = self.headers.get("Host", "")
        kind = ("token" if path.endswith("/oauth2/v2.0/token") else "exchange" if path == "/oauth2/exchange"
                else "acr_token" if path == "/oauth2/token" else "other")
        injected, headers, note = False, {}, "ok"
        try:
            body = self._read_body()
            if path == "/stats" and method == "GET":
                status, payload = 200, self._snapshot()
            elif path == "/log" and method == "GET":
                with self.state.lock:
                    status, payload = 200, list(self.state.log)
            elif path == "/control":
                status, payload = 200, self._control(body if method == "POST" else None)
            else:
                latency = self.state.settings["latency_ms"]
                if latency > 0:
                    time.sleep(latency / 1000.0)
                failure = self.state.inject(kind)
                if failure is not None:
                    injected = True
                    raise failure
                if kind == "token" and method == "POST":
                    status, payload, note = self._token(path, body)
                elif kind == "exchange" and method == "POST":
                    status, payload, note = self._exchange(body, host)
                elif kind == "acr_token" and method == "POST":
                    status, payload, note = self._acr_token(body, host)
                elif path == "/acr/v1/_catalog" and method == "GET":
                    status, payload, note, headers = self._catalog(host)
                else:
                    raise Refusal(404, {"error": "not_found"}, "not found")
        except Refusal as e:
            status, payload, note, headers = e.status, e.body, e.note, e.headers
        except GoogleError as e:  # the JWKS client's failures
            status, payload, note = 400, entra_error("invalid_client", 700027, str(e.note)).body, "jwks"
        line = (f"{time.time():.3f} {self.client_address[0]} {method} host={host} {path} {status} "
                f"{(time.monotonic() - started) * 1000:.1f}ms {note}")
        # Counted before answering: a client that reads /stats right after its answer must see its own request.
        if path not in ("/stats", "/log", "/control"):
            self.state.record(kind, status, injected, line)
        self._send(status, payload, headers)
        sys.stderr.write(f"azure_fake: {line}\n")
        sys.stderr.flush()

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise Refusal(411, {"error": "invalid_request"}, "chunked body")
        if length is None:
            return b""
        length = int(length)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise Refusal(413, {"error": "invalid_request"}, "body too large")
        return self.rfile.read(length)

    def _send(self, status, payload, headers):
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _snapshot(self):
        with self.state.lock:
            return json.loads(json.dumps(self.state.stats))

    def _control(self, body):
        s = self.state
        if body is not None:
            try:
                changes = json.loads(body or b"{}")
            except ValueError:
                raise Refusal(400, {"error": "control body is not JSON"}, "control")
            unknown = set(changes) - set(s.settings) - {"reset_stats"}
            if unknown:
                raise Refusal(400, {"error": f"unknown settings {sorted(unknown)}"}, "control")
            with s.lock:
                for name, value in changes.items():
                    if name == "reset_stats":
                        if value:
                            s.stats = s._zero()
                            s.log = []
                    else:
                        s.settings[name] = value
        with s.lock:
            return dict(s.settings)

    # --- Entra ---------------------------------------------------------------------------------------

    def _token(self, path, body):
        s = self.state
        tenant = path[: -len("/oauth2/v2.0/token")].strip("/")
        fields = form_fields(self, body)
        if fields is None:
            raise entra_error("invalid_request", 900144,
                              "The request body must contain the following parameter: 'grant_type'.")
        if tenant.lower() not in s.tenants:
            raise entra_error("invalid_request", 90002,
                              f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                              "and are signing into the correct cloud. Check with your subscription administrator, "
                              "this may happen if there are no active subscriptions for the tenant.")
        for name in ("grant_type", "client_id", "client_assertion_type", "client_assertion", "scope"):
            if not fields.get(name):
                raise entra_error("invalid_request", 900144,
                                  f"The request body must contain the following parameter: '{name}'.")
        if fields["grant_type"] != "client_credentials":
            raise entra_error("unsupported_grant_type", 70003,
                              "The app requested an unsupported grant type.")
        if fields["client_assertion_type"] != CLIENT_ASSERTION_TYPE:
            raise entra_error("invalid_request", 7000219,
                              "'client_assertion' or 'client_secret' is required for the 'client_credentials' grant.")
        scope = fields["scope"]
        if not scope.endswith("/.default"):
            raise entra_error("invalid_scope", 1002012,
                              f"The provided value for scope {scope} is not valid. Client credential flows must "
                              "have a scope value with /.default suffixed to the resource identifier "
                              "(application ID URI).")
        if scope != ACR_RESOURCE + "/.default":
            raise entra_error("invalid_resource", 500011,
                              f"The resource principal named {scope[:-len('/.default')]} was not found in the "
                              f"tenant named {tenant}.")
        client_id = fields["client_id"].lower()
        if s.apps.get(client_id) != tenant.lower():
            raise entra_error("unauthorized_client", 700016,
                              f"Application with identifier '{fields['client_id']}' was not found in the "
                              f"directory '{tenant}'. This can happen if the application has not been installed "
                              "by the administrator of the tenant or consented to by any user in the tenant.")
        claims = self._verify_assertion(fields["client_assertion"])
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        matched = any(iss == claims.get("iss") and sub == claims.get("sub") and audience in audiences
                      for iss, sub, audience in s.fics.get(client_id, []))
        if not matched:
            raise entra_error("invalid_request", 70021,
                              "No matching federated identity record found for presented assertion. "
                              f"Assertion Issuer: '{claims.get('iss')}'. Assertion Subject: '{claims.get('sub')}'. "
                              f"Assertion Audience: '{','.join(str(a) for a in audiences)}'.")
        now = int(s.now())
        lifetime = int(s.settings["access_token_lifetime"])
        token = s.sign({"kind": "entra", "aud": ACR_RESOURCE, "iss": f"https://sts.windows.net/{tenant}/",
                        "tid": tenant.lower(), "appid": client_id, "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
                        "iat": now, "nbf": now, "exp": now + lifetime})
        return 200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                     "access_token": token}, f"issued for {client_id} ({claims.get('sub')})"

    def _verify_assertion(self, assertion):
        s = self.state
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.exceptions.PyJWTError:
            raise entra_error("invalid_client", 50027, "JWT token is invalid or malformed.")
        try:
            key = s.jwks.key_for(header.get("kid"))
            claims = jwt.decode(assertion, key.key, algorithms=["RS256", "ES256"],
                                options={"verify_exp": False, "verify_nbf": False, "verify_aud": False,
                                         "verify_iat": False})
        except GoogleError:
            raise entra_error("invalid_client", 700027, "Client assertion failed signature validation.")
        except jwt.exceptions.PyJWTError:
            raise entra_error("invalid_client", 700027, "Client assertion failed signature validation.")
        now = s.now()
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, (int, float)) or exp + CLOCK_SKEW < now or (
                isinstance(nbf, (int, float)) and nbf - CLOCK_SKEW > now):
            raise entra_error("invalid_client", 700024,
                              "Client assertion is not within its valid time range. "
                              f"Current time: {datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat()}, "
                              f"expiry time of assertion {exp}.")
        return claims

    # --- ACR -----------------------------------------------------------------------------------------

    def _service_check(self, service, host):
        s = self.state
        host_name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
        if service not in s.registries:
            raise acr_error(f"service {service!r} is not a registry of this server", 400, "BAD_REQUEST")
        if host_name.endswith(REGISTRY_SUFFIXES) and host_name != service:
            raise acr_error(f"service {service!r} does not match the registry {host_name!r}", 400, "BAD_REQUEST")

    def _exchange(self, body, host):
        s = self.state
        fields = form_fields(self, body)
        if fields is None:
            raise acr_error("the body must be application/x-www-form-urlencoded", 400, "BAD_REQUEST")
        if fields.get("grant_type") != "access_token":
            raise acr_error("grant_type must be access_token", 400, "BAD_REQUEST")
        for name in ("service", "access_token"):
            if not fields.get(name):
                raise acr_error(f"missing {name}", 400, "BAD_REQUEST")
        self._service_check(fields["service"], host)
        claims = s.issued(fields["access_token"], "entra")
        if claims is None or claims.get("aud") != ACR_RESOURCE:
            raise acr_error("the access token is not valid for this registry")
        if fields.get("tenant") and fields["tenant"].lower() != claims["tid"]:
            raise acr_error(f"the access token's tenant does not match tenant {fields['tenant']!r}")
        if claims["appid"] in s.no_pull:
            raise acr_error(f"the principal {claims['oid']} has no role assignment on registry {fields['service']}")
        now = int(s.now())
        token = s.sign({"kind": "refresh", "jti": str(uuid.uuid4()), "sub": claims["oid"], "appid": claims["appid"],
                        "tenant": claims["tid"], "aud": fields["service"], "iss": "Azure Container Registry",
                        "grant_type": "refresh_token", "nbf": now, "iat": now,
                        "exp": now + int(s.settings["refresh_token_lifetime"])})
        return 200, {"refresh_token": token}, f"exchanged for {claims['appid']}"

    def _acr_token(self, body, host):
        s = self.state
        fields = form_fields(self, body)
        if fields is None or fields.get("grant_type") != "refresh_token":
            raise acr_error("grant_type must be refresh_token", 400, "BAD_REQUEST")
        for name in ("service", "scope", "refresh_token"):
            if not fields.get(name):
                raise acr_error(f"missing {name}", 400, "BAD_REQUEST")
        self._service_check(fields["service"], host)
        claims = s.issued(fields["refresh_token"], "refresh")
        if claims is None or claims.get("aud") != fields["service"]:
            raise acr_error("the refresh token is not valid for this registry")
        now = int(s.now())
        token = s.sign({"kind": "acr", "aud": fields["service"], "scope": fields["scope"], "exp": now + 300,
                        "iat": now})
        return 200, {"access_token": token}, "access token"

    def _catalog(self, host):
        s = self.state
        service = host.rsplit(":", 1)[0]
        auth = self.headers.get("Authorization", "")
        claims = s.issued(auth[len("Bearer "):], "acr") if auth.startswith("Bearer ") else None
        if claims is None or claims.get("aud") != service:
            challenge = f'Bearer realm="https://{service}/oauth2/token",service="{service}",scope="{ACCESS_SCOPE}"'
            raise Refusal(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                          "challenge", {"WWW-Authenticate": challenge})
        return 200, {"repositories": ["hello-world"]}, "catalog", {}


class ProxyHandler(BaseHTTPRequestHandler):
    """A forward proxy for CONNECT: Azure's names and loopback ports are tunnelled, the rest refused."""

    protocol_version = "HTTP/1.1"
    service_port = None
    state = None

    def log_message(self, format, *args):
        pass

    def do_CONNECT(self):
        host, _, port = self.path.rpartition(":")
        ours = host in AUTHORITY_HOSTS or host.endswith(REGISTRY_SUFFIXES) or host in self.state.registries
        if ours:
            target = ("127.0.0.1", self.service_port)
        elif host in ("127.0.0.1", "localhost") and port.isdigit():
            target = ("127.0.0.1", int(port))
        else:
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            sys.stderr.write(f"azure_fake: proxy refused CONNECT {self.path}\n")
            return
        try:
            upstream = socket.create_connection(target, timeout=10)
        except OSError:
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with self.state.lock:
            self.state.stats["connects"] += 1
            self.state.log.append(f"{time.time():.3f} CONNECT {self.path}")
        sys.stderr.write(f"azure_fake: proxy CONNECT {self.path}\n")
        sys.stderr.flush()
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        client = self.connection
        sockets = [client, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 60)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--proxy-port", type=int, default=0)
    parser.add_argument("--issuer", required=True, help="the kube-apiserver's service-account issuer URL")
    parser.add_argument("--ca-file", help="PEM bundle that verifies the issuer's TLS certificate")
    parser.add_argument("--tls-dir", required=True, help="where ca.crt (and the server's key pair) are written")
    parser.add_argument("--tenant", action="append", required=True, help="a tenant ID of this Entra; repeatable")
    parser.add_argument("--app", action="append", default=[], metavar="CLIENT_ID[@TENANT]",
                        help="an application (client) registered in TENANT (default: the first --tenant)")
    parser.add_argument("--fic", action="append", default=[], metavar="CLIENT_ID=SUBJECT",
                        help="a federated identity credential: --issuer, SUBJECT, --fic-audience")
    parser.add_argument("--fic-audience", default=DEFAULT_FIC_AUDIENCE)
    parser.add_argument("--registry", action="append", default=[], help="a registry host served; repeatable")
    parser.add_argument("--no-pull", action="append", default=[], metavar="CLIENT_ID",
                        help="an application without a pull role: ACR refuses its exchange")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--refresh-token-lifetime", type=int, default=10800)
    parser.add_argument("--watch-pid", type=int)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cert, key = make_tls(args.tls_dir, args.registry)
    Handler.state = State(args, Jwks(args.issuer, args.ca_file))
    server = serving.wrap_tls(ThreadingHTTPServer((serving.LOOPBACK, args.port), Handler), serving.tls_context(cert, key))
    ProxyHandler.service_port = server.server_address[1]
    ProxyHandler.state = Handler.state
    proxy = ThreadingHTTPServer((serving.LOOPBACK, args.proxy_port), ProxyHandler)
    for s in (server, proxy):
        serving.serve_in_background(s)
    ready = [f"PROXY port={proxy.server_address[1]}", f"READY port={server.server_address[1]}"]
    return serving.run("azure_fake", [server, proxy], ready, args.watch_pid)


if __name__ == "__main__":
    sys.exit(main())
