#!/usr/bin/env python3
"""A strict stand-in for Google STS (token exchange) and IAM Credentials (generateAccessToken).

No emulator of either service exists, so integration tests, demos and benchmarks run against this one. It
behaves like Google, not like our client: it accepts what Google accepts (form-encoded and JSON token-exchange
bodies, snake_case and camelCase field names), rejects what Google rejects with Google's error shapes, and
verifies the subject token the way a workload identity pool does -- OIDC discovery and JWKS fetched from the
real issuer (the kube-apiserver), RS256/ES256 signature, `iss`, `exp`, `aud` against the provider's allowed
audiences, `sub`. generateAccessToken requires a federated token this fake issued and an `--allow` grant for
the federated subject, like the roles/iam.workloadIdentityUser binding on a real service account.

Only loopback addresses are served. No token is ever written to the log (stderr, one line per request, beginning
with its arrival time in seconds since the epoch: `google_fake: 1764480000.123 127.0.0.1 POST /v1/token 200 ...`).

Usage:
  google_fake.py --port 0 --issuer https://127.0.0.1:6443 --ca-file apiserver-ca.crt \\
      --pool projects/123/locations/global/workloadIdentityPools/pool/providers/kube=my-audience \\
      --allow puller@proj.iam.gserviceaccount.com=system:serviceaccount:default:puller
Prints `READY port=N` on stdout once it accepts connections; exits cleanly on SIGTERM or SIGINT, and with
`--watch-pid PID` once process PID is gone (so a test run that dies leaves no fake behind).

Test endpoints beside Google's: `GET /stats` (call counters as JSON), `GET|POST /control` (read or change
latency_ms, failure_rate, token_lifetime, now_offset_seconds at run time; `{"reset_stats": true}` zeroes the
counters). `now_offset_seconds` (also `--now-offset-seconds`) sets the fake's clock ahead of the host's (behind when
negative): a fresh ServiceAccount token -- the API server issues none shorter than 600 s -- looks expired to a
fake 700 s ahead, without a test waiting ten minutes.
"""

import argparse
import http.client
import ipaddress
import json
import os
import random
import re
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import serving  # the stand-ins' shared life cycle (this directory)

try:
    import jwt
except ImportError:  # The message says how to get it, instead of a bare traceback.
    sys.exit("google_fake: PyJWT with cryptography is required: pip install -r scripts/testenv/requirements.txt")

GRANT_TYPE_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
# Subject token types Google knows but an OIDC provider does not take.
TOKEN_TYPES_OTHER_PROVIDERS = (
    "urn:ietf:params:oauth:token-type:saml2",
    "urn:ietf:params:aws:token-type:aws4_request",
    "urn:ietf:params:oauth:token-type:access_token",
)
GOOGLE_SCOPE_PREFIX = "https://www.googleapis.com/auth/"
IAM_NAME_PREFIX = "//iam.googleapis.com/"
DEFAULT_AUDIENCE_PREFIX = "https://iam.googleapis.com/"
PROVIDER_RE = re.compile(
    r"projects/(\d+)/locations/global/workloadIdentityPools/([a-z0-9-]{4,32})/providers/([a-z0-9-]{4,32})"
)
PRINCIPAL_PREFIX = "principal://iam.googleapis.com/"
PRINCIPAL_SET_PREFIX = "principalSet://iam.googleapis.com/"
IAM_PATH_RE = re.compile(r"/v1/projects/([^/]+)/serviceAccounts/([^/]+):generateAccessToken")
DURATION_RE = re.compile(r"(\d+)(?:\.(\d{1,9}))?s")

STS_TOKEN_LIFETIME = 3600  # Google's federated tokens live one hour.
MAX_ACCESS_TOKEN_LIFETIME = 3600  # Longer needs an organization policy this fake does not model.
MAX_SUBJECT_BYTES = 127  # Google's limit for the mapped google.subject attribute.
CLOCK_SKEW = 60
MAX_BODY_BYTES = 1 << 20
JWKS_MIN_REFETCH_SECONDS = 1.0

# Field names of the token exchange: Google takes the proto names and their JSON (camelCase) names.
STS_FIELDS = {
    "grant_type": "grant_type",
    "grantType": "grant_type",
    "audience": "audience",
    "scope": "scope",
    "requested_token_type": "requested_token_type",
    "requestedTokenType": "requested_token_type",
    "subject_token": "subject_token",
    "subjectToken": "subject_token",
    "subject_token_type": "subject_token_type",
    "subjectTokenType": "subject_token_type",
    "options": "options",
}


class GoogleError(Exception):
    """An answer in one of Google's error shapes."""

    def __init__(self, status, body, note, headers=None):
        super().__init__(note)
        self.status = status
        self.body = body
        self.note = note
        self.headers = headers or {}


def oauth_error(code, description, status=400):
    """STS speaks OAuth: {"error": code, "error_description": text}."""
    # Descriptions never quote a token, so the log line may carry them.
    return GoogleError(status, {"error": code, "error_description": description}, f"{code}: {description}")


def api_error(code, status, message, details=None, headers=None):
    """Google APIs: {"error": {"code": 403, "message": ..., "status": "PERMISSION_DENIED"}}."""
    error = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return GoogleError(code, {"error": error}, f"{status}: {message}", headers)


def unavailable():
    return api_error(503, "UNAVAILABLE", "The service is currently unavailable.")


def not_found():
    return api_error(404, "NOT_FOUND", "Requested entity was not found.")


def rfc3339(moment):
    """RFC 3339 in UTC with fractional seconds and 'Z', as Google writes expireTime."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Jwks:
    """The issuer's signing keys, found through OIDC discovery, cached, refetched when a kid is unknown."""

    def __init__(self, issuer, ca_file, timeout=5.0):
        self.issuer = issuer
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.lock = threading.Lock()
        self.keys = {}
        self.fetched_at = None

    def key_for(self, kid):
        with self.lock:
            key = self._lookup(kid)
            stale = self.fetched_at is None or time.monotonic() - self.fetched_at >= JWKS_MIN_REFETCH_SECONDS
            if key is None and stale:
                self._fetch()
                key = self._lookup(kid)
            if key is None:
                raise oauth_error(
                    "invalid_grant",
                    f"The ID Token's key ID [{kid}] does not match any key in the issuer's JWKS.",
                )
            return key

    def _lookup(self, kid):
        if kid is not None:
            return self.keys.get(kid)
        # A token without kid is usable only when the choice is unambiguous.
        return next(iter(self.keys.values())) if len(self.keys) == 1 else None

    def _get_json(self, url, accept="application/json"):
        request = urllib.request.Request(url, headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
            return json.loads(response.read(MAX_BODY_BYTES))

    def _fetch(self):
        discovery_url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            discovery = self._get_json(discovery_url)
            if discovery.get("issuer") != self.issuer:
                raise ValueError(f"discovery names issuer {discovery.get('issuer')!r}")
            # The kube-apiserver serves its JWKS only as application/jwk-set+json (406 to a bare application/json).
            jwks = self._get_json(discovery["jwks_uri"], "application/jwk-set+json, application/json;q=0.9")
            keys = {}
            for jwk in jwks.get("keys", []):
                try:
                    keys[jwk.get("kid")] = jwt.PyJWK.from_dict(jwk)
                except jwt.exceptions.PyJWTError:
                    continue  # A key of a type Google does not use is skipped, as Google does.
        except (OSError, ValueError, KeyError, AttributeError, TypeError, http.client.HTTPException) as e:
            raise oauth_error(
                "invalid_grant",
                f"Failed to fetch the JWKS of issuer [{self.issuer}] through OIDC discovery: {e}",
            ) from e
        self.keys = keys
        self.fetched_at = time.monotonic()


class Provider:
    """A workload identity pool provider: its name and the audiences it accepts."""

    def __init__(self, name, audiences):
        match = PROVIDER_RE.fullmatch(name)
        if not match:
            raise ValueError(
                f"provider {name!r} is not projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/ID"
            )
        self.name = name
        self.project_number, self.pool_id, _ = match.groups()
        # Without configured audiences Google accepts the provider's full name, with or without https:.
        self.audiences = audiences or [DEFAULT_AUDIENCE_PREFIX + name, IAM_NAME_PREFIX + name]

    @property
    def pool(self):
        return f"projects/{self.project_number}/locations/global/workloadIdentityPools/{self.pool_id}"


class Grant:
    """An --allow rule: who may impersonate a service account (roles/iam.workloadIdentityUser)."""

    def __init__(self, email, member):
        self.email = email.lower()
        self.member = member

    def admits(self, pool, subject):
        if self.member == "*":
            return True
        if self.member.startswith(PRINCIPAL_PREFIX):
            return self.member == f"{PRINCIPAL_PREFIX}{pool}/subject/{subject}"
        if self.member.startswith(PRINCIPAL_SET_PREFIX):
            return self.member == f"{PRINCIPAL_SET_PREFIX}{pool}/*"
        return self.member == subject


class State:
    """Everything the handlers share; one lock guards it."""

    def __init__(self, args, providers, grants, jwks):
        self.lock = threading.Lock()
        self.issuer = args.issuer
        self.providers = providers
        self.grants = grants
        self.jwks = jwks
        self.latency_ms = args.latency_ms
        self.failure_rate = args.failure_rate
        self.token_lifetime = args.token_lifetime
        self.now_offset_seconds = args.now_offset_seconds
        self.stats_file = args.stats_file
        self.access_token = getattr(args, "access_token", None)
        self.federated = {}  # STS token -> (provider, subject, expiry epoch)
        self.stats = self._zero_stats()

    @staticmethod
    def _zero_stats():
        return {
            "sts_calls": 0,
            "sts_ok": 0,
            "iam_calls": 0,
            "iam_ok": 0,
            "injected_failures": 0,
            "rejected": 0,
            "responses": {},
        }

    def settings(self):
        with self.lock:
            return {
                "latency_ms": self.latency_ms,
                "failure_rate": self.failure_rate,
                "token_lifetime": self.token_lifetime,
                "now_offset_seconds": self.now_offset_seconds,
            }

    def now(self):
        """The fake's clock: the host's, shifted by now_offset_seconds. Every expiry it checks or sets uses it."""
        with self.lock:
            offset = self.now_offset_seconds
        return time.time() + offset

    def record(self, kind, status, injected):
        with self.lock:
            if kind in ("sts", "iam"):
                self.stats[f"{kind}_calls"] += 1
                if status == 200:
                    self.stats[f"{kind}_ok"] += 1
            if injected:
                self.stats["injected_failures"] += 1
            elif 400 <= status < 500:
                self.stats["rejected"] += 1
            key = str(status)
            self.stats["responses"][key] = self.stats["responses"].get(key, 0) + 1
            snapshot = json.dumps(self.stats)
            if self.stats_file:
                temporary = self.stats_file + ".tmp"
                with open(temporary, "w", encoding="utf-8") as f:
                    f.write(snapshot)
                os.replace(temporary, self.stats_file)

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.stats))

    def remember_federated(self, token, provider, subject, expiry):
        with self.lock:
            if len(self.federated) > 100_000:
                now = time.time() + self.now_offset_seconds
                self.federated = {t: v for t, v in self.federated.items() if v[2] > now}
            self.federated[token] = (provider, subject, expiry)

    def federated_identity(self, token):
        with self.lock:
            identity = self.federated.get(token)
        if identity is None or identity[2] <= self.now():
            return None
        return identity


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the body waits for the client's delayed
    # ACK of the headers, about 40 ms on Linux, on every keep-alive response. Google's front ends send no such
    # stall, and it would dominate any measurement of the client.
    disable_nagle_algorithm = True
    server_version = "ESF"
    sys_version = ""
    state = None  # set by main()

    def version_string(self):
        return self.server_version

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def log_message(self, format, *args):
        pass  # One line per request is written by _handle, without the request line's details.

    def _handle(self, method):
        arrived_at = time.time()
        started = time.monotonic()
        path = urllib.parse.urlsplit(self.path).path
        kind = "sts" if path == "/v1/token" else "iam" if IAM_PATH_RE.fullmatch(path) else "other"
        injected = False
        note = "ok"
        try:
            body = self._read_body()
            if path == "/stats" and method == "GET":
                status, payload = 200, self.state.snapshot()
            elif path == "/control" and method in ("GET", "POST"):
                status, payload = 200, self._control(body if method == "POST" else None)
            else:
                settings = self.state.settings()
                if settings["latency_ms"] > 0:
                    time.sleep(settings["latency_ms"] / 1000.0)
                if kind != "other" and random.random() < settings["failure_rate"]:
                    injected = True
                    raise unavailable()
                if method != "POST" or kind == "other":
                    raise not_found()
                if kind == "sts":
                    status, payload, note = self._token_exchange(body)
                else:
                    status, payload, note = self._generate_access_token(path, body)
            headers = {}
        except GoogleError as e:
            status, payload, note, headers = e.status, e.body, e.note, e.headers
        # Counted before answering: a client that reads /stats right after its answer must see its own request.
        if path not in ("/stats", "/control"):
            self.state.record(kind, status, injected)
        self._send(status, payload, headers)
        elapsed = (time.monotonic() - started) * 1000
        # The path holds at most a service account email; tokens travel only in bodies and headers. The line
        # begins with the wall-clock arrival time, so tests can count requests per second (rate limits).
        sys.stderr.write(
            f"google_fake: {arrived_at:.3f} {self.client_address[0]} {method} {path} {status} {elapsed:.1f}ms "
            f"{note}\n"
        )
        sys.stderr.flush()

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise api_error(413, "INVALID_ARGUMENT", "Request payload size exceeds the limit.")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            length = int(length)
        except ValueError:
            self.close_connection = True
            raise api_error(400, "INVALID_ARGUMENT", "Invalid Content-Length.")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise api_error(413, "INVALID_ARGUMENT", "Request payload size exceeds the limit.")
        return self.rfile.read(length)

    def _send(self, status, payload, headers):
        data = json.dumps(payload, indent=2).encode("utf-8") + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _control(self, body):
        if body is not None:
            try:
                changes = json.loads(body or b"{}")
            except ValueError:
                raise api_error(400, "INVALID_ARGUMENT", "control body is not JSON")
            if not isinstance(changes, dict):
                raise api_error(400, "INVALID_ARGUMENT", "control body is not a JSON object")
            known = {"latency_ms", "failure_rate", "token_lifetime", "now_offset_seconds", "reset_stats"}
            unknown = set(changes) - known
            if unknown:
                raise api_error(400, "INVALID_ARGUMENT", f"unknown control fields: {sorted(unknown)}")
            latency = changes.get("latency_ms")
            rate = changes.get("failure_rate")
            lifetime = changes.get("token_lifetime")
            offset = changes.get("now_offset_seconds")
            if latency is not None and (not _is_number(latency) or latency < 0):
                raise api_error(400, "INVALID_ARGUMENT", "latency_ms must be a number >= 0")
            if rate is not None and (not _is_number(rate) or not 0 <= rate <= 1):
                raise api_error(400, "INVALID_ARGUMENT", "failure_rate must be a number in 0..1")
            if lifetime is not None and (not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < 1):
                raise api_error(400, "INVALID_ARGUMENT", "token_lifetime must be an integer >= 1")
            if offset is not None and not _is_number(offset):
                raise api_error(400, "INVALID_ARGUMENT", "now_offset_seconds must be a number")
            with self.state.lock:
                if latency is not None:
                    self.state.latency_ms = latency
                if rate is not None:
                    self.state.failure_rate = rate
                if lifetime is not None:
                    self.state.token_lifetime = lifetime
                if offset is not None:
                    self.state.now_offset_seconds = offset
                if changes.get("reset_stats"):
                    self.state.stats = State._zero_stats()
        return self.state.settings()

    # --- Google STS ---

    def _token_exchange(self, body):
        fields = self._token_exchange_fields(body)
        grant_type = fields.get("grant_type")
        if not grant_type:
            raise oauth_error("invalid_request", 'The "grant_type" parameter is required.')
        if grant_type != GRANT_TYPE_TOKEN_EXCHANGE:
            raise oauth_error("unsupported_grant_type", f"Unsupported grant type: {grant_type}.")
        requested = fields.get("requested_token_type")
        if not requested:
            raise oauth_error("invalid_request", 'The "requested_token_type" parameter is required.')
        if requested != TOKEN_TYPE_ACCESS_TOKEN:
            raise oauth_error(
                "invalid_request",
                f'Invalid value for "requested_token_type": {requested}. Expected {TOKEN_TYPE_ACCESS_TOKEN}.',
            )
        subject_token_type = fields.get("subject_token_type")
        if not subject_token_type:
            raise oauth_error("invalid_request", 'The "subject_token_type" parameter is required.')
        if not fields.get("subject_token"):
            raise oauth_error("invalid_request", 'The "subject_token" parameter is required.')
        audience = fields.get("audience")
        if not audience:
            raise oauth_error("invalid_request", 'The "audience" parameter is required.')
        name = audience[len(IAM_NAME_PREFIX):] if audience.startswith(IAM_NAME_PREFIX) else None
        if name is None or not PROVIDER_RE.fullmatch(name):
            raise oauth_error(
                "invalid_request",
                f'Invalid value for "audience": {audience}. Expected //iam.googleapis.com/projects/'
                "PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL_ID/providers/PROVIDER_ID.",
            )
        provider = self.state.providers.get(name)
        if provider is None:
            raise oauth_error(
                "invalid_target",
                'The target service indicated by the "audience" parameters is invalid. This might either be '
                "because the pool or provider is disabled or deleted or because it doesn't exist.",
            )
        if subject_token_type in TOKEN_TYPES_OTHER_PROVIDERS:
            raise oauth_error(
                "invalid_request",
                f"Invalid subject token type {subject_token_type} for an OIDC provider. Expected "
                f"{TOKEN_TYPE_JWT} or {TOKEN_TYPE_ID_TOKEN}.",
            )
        if subject_token_type not in (TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN):
            raise oauth_error("invalid_request", f"Unsupported subject token type: {subject_token_type}.")
        scope = fields.get("scope")
        if not scope:
            raise oauth_error("invalid_request", 'The "scope" parameter is required.')
        for item in scope.split():
            if not item.startswith(GOOGLE_SCOPE_PREFIX):
                raise oauth_error("invalid_scope", f"Invalid scope: {item}.")
        subject = self._verify_subject_token(fields["subject_token"], provider)

        token = "ya29.d." + secrets.token_urlsafe(48)
        self.state.remember_federated(token, provider, subject, self.state.now() + STS_TOKEN_LIFETIME)
        payload = {
            "access_token": token,
            "issued_token_type": TOKEN_TYPE_ACCESS_TOKEN,
            "token_type": "Bearer",
            "expires_in": STS_TOKEN_LIFETIME,
        }
        return 200, payload, f"ok sub={subject}"

    def _token_exchange_fields(self, body):
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                raw = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise api_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            if not isinstance(raw, dict):
                raise api_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Expected an object.")
            for key, value in raw.items():
                if key not in STS_FIELDS:
                    raise api_error(
                        400, "INVALID_ARGUMENT", f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
                    )
                if not isinstance(value, str):
                    raise api_error(
                        400,
                        "INVALID_ARGUMENT",
                        f'Invalid value at \'{key}\' (TYPE_STRING), {json.dumps(value)[:40]}',
                    )
            pairs = raw.items()
        elif content_type == "application/x-www-form-urlencoded":
            try:
                pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except (UnicodeDecodeError, ValueError):
                raise oauth_error("invalid_request", "The request body is not valid form data.")
        else:
            raise oauth_error(
                "invalid_request",
                "The request must be application/x-www-form-urlencoded or application/json.",
            )
        fields = {}
        for key, value in pairs:
            canonical = STS_FIELDS.get(key)
            if canonical is not None and canonical not in fields:
                fields[canonical] = value
        return fields

    def _verify_subject_token(self, token, provider):
        """What a workload identity pool checks of an OIDC token; returns google.subject (the `sub`)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.exceptions.DecodeError:
            raise oauth_error("invalid_grant", "Unable to parse the ID Token.")
        algorithm = header.get("alg")
        if algorithm not in ("RS256", "ES256"):
            raise oauth_error("invalid_grant", f"The ID Token is signed with unsupported algorithm [{algorithm}].")
        key = self.state.jwks.key_for(header.get("kid"))
        if key.algorithm_name != algorithm:
            raise oauth_error("invalid_grant", "Invalid ID Token signature.")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.exceptions.InvalidSignatureError:
            raise oauth_error("invalid_grant", "Invalid ID Token signature.")
        except jwt.exceptions.PyJWTError:
            raise oauth_error("invalid_grant", "Unable to parse the ID Token.")

        if claims.get("iss") != self.state.issuer:
            raise oauth_error(
                "invalid_grant",
                f"The issuer in ID Token [{claims.get('iss')}] does not match the expected ones: [{self.state.issuer}].",
            )
        now = self.state.now()
        expiry = claims.get("exp")
        if not _is_number(expiry):
            raise oauth_error("invalid_grant", "The ID Token has no valid expiration time (exp).")
        if expiry <= now:
            raise oauth_error("invalid_grant", f"The ID Token has expired: exp {int(expiry)} is in the past.")
        for claim in ("iat", "nbf"):
            value = claims.get(claim)
            if value is not None and (not _is_number(value) or value > now + CLOCK_SKEW):
                raise oauth_error("invalid_grant", f"The ID Token's {claim} lies in the future.")
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or not any(a in provider.audiences for a in audiences):
            raise oauth_error(
                "invalid_grant",
                f"The audience in ID Token [{claims.get('aud')}] does not match the expected audience.",
            )
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise oauth_error("invalid_grant", 'The ID Token has no "sub" claim to map to google.subject.')
        if len(subject.encode("utf-8")) > MAX_SUBJECT_BYTES:
            raise oauth_error(
                "invalid_request",
                f"The mapped attribute google.subject exceeds the {MAX_SUBJECT_BYTES} bytes limit.",
            )
        return subject

    # --- Google IAM Credentials ---

    def _generate_access_token(self, path, body):
        scheme, _, credential = self.headers.get("Authorization", "").partition(" ")
        identity = None
        if scheme.lower() == "bearer" and credential.strip():
            identity = self.state.federated_identity(credential.strip())
        if identity is None:
            raise api_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        provider, subject, _ = identity
        project, email = IAM_PATH_RE.fullmatch(path).groups()
        email = urllib.parse.unquote(email)
        if project != "-":
            raise api_error(
                400,
                "INVALID_ARGUMENT",
                "The project in the resource name must be the wildcard '-': projects/-/serviceAccounts/EMAIL.",
            )
        try:
            request = json.loads(body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            raise api_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not isinstance(request, dict):
            raise api_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Expected an object.")
        for key in request:
            if key not in ("scope", "lifetime", "delegates"):
                raise api_error(
                    400, "INVALID_ARGUMENT", f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
                )
        scope = request.get("scope")
        if not isinstance(scope, list) or not scope or not all(isinstance(s, str) and s for s in scope):
            raise api_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument: scope must be a non-empty list.")
        lifetime = MAX_ACCESS_TOKEN_LIFETIME
        if "lifetime" in request:
            value = request["lifetime"]
            match = DURATION_RE.fullmatch(value) if isinstance(value, str) else None
            if match is None:
                raise api_error(
                    400,
                    "INVALID_ARGUMENT",
                    f"Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration), {json.dumps(value)}",
                )
            lifetime = int(match.group(1)) + (int(match.group(2).ljust(9, "0")) / 1e9 if match.group(2) else 0)
            if not 1 <= lifetime <= MAX_ACCESS_TOKEN_LIFETIME:
                raise api_error(
                    400,
                    "INVALID_ARGUMENT",
                    f"Request contains an invalid argument: lifetime must be between 1s and {MAX_ACCESS_TOKEN_LIFETIME}s.",
                )
        delegates = request.get("delegates") or []
        granted = not delegates and any(
            g.email == email.lower() and g.admits(provider.pool, subject) for g in self.state.grants
        )
        if not granted:
            raise api_error(
                403,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "IAM_PERMISSION_DENIED",
                        "domain": "iam.googleapis.com",
                        "metadata": {"permission": "iam.serviceAccounts.getAccessToken"},
                    }
                ],
            )
        # The test knob caps what the client asked for, so outage and refresh tests can shorten lifetimes.
        lifetime = min(lifetime, self.state.settings()["token_lifetime"])
        expire_time = datetime.fromtimestamp(self.state.now(), timezone.utc) + timedelta(seconds=lifetime)
        token = self.state.access_token or "ya29.c." + secrets.token_urlsafe(64)
        payload = {"accessToken": token, "expireTime": rfc3339(expire_time)}
        return 200, payload, f"ok sub={subject} lifetime={lifetime:g}s"


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="A strict stand-in for Google STS and IAM Credentials.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    parser.add_argument("--issuer", required=True, help="the kube-apiserver's service-account issuer URL")
    parser.add_argument("--ca-file", help="PEM bundle that verifies the issuer's TLS certificate")
    parser.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="PROVIDER[=AUDIENCE[,AUDIENCE...]]",
        help="a workload identity provider and its allowed audiences (default: its full name); repeatable",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="EMAIL=MEMBER",
        help="MEMBER may impersonate EMAIL: a subject system:serviceaccount:NS:NAME, a principal:// or "
        "principalSet://.../* member, or * for anyone; repeatable",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every Google answer")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of calls answered 503 (0..1)")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="longest access token lifetime, seconds")
    parser.add_argument("--stats-file", help="file rewritten with the call counters after every call")
    parser.add_argument(
        "--now-offset-seconds",
        type=float,
        default=0.0,
        help="run the fake's clock this many seconds ahead of the host's (negative: behind)",
    )
    parser.add_argument(
        "--access-token-file",
        help="issue the access token held in this file instead of a random one, so that a test registry can "
        "accept exactly what this fake issues (as Artifact Registry accepts Google's tokens)",
    )
    parser.add_argument("--watch-pid", type=int, help="stop once the process with this ID is gone")
    args = parser.parse_args(argv)
    args.access_token = None
    if args.access_token_file:
        with open(args.access_token_file, encoding="utf-8") as f:
            args.access_token = f.read().strip()
        if not args.access_token:
            parser.error("--access-token-file: the file is empty")

    host = "127.0.0.1" if args.host == "localhost" else args.host
    try:
        loopback = ipaddress.ip_address(host).is_loopback and ipaddress.ip_address(host).version == 4
    except ValueError:
        loopback = False
    if not loopback:
        parser.error(f"--host {args.host!r}: only IPv4 loopback addresses are served")
    args.host = host
    scheme = urllib.parse.urlsplit(args.issuer).scheme
    if scheme not in ("https", "http"):
        parser.error(f"--issuer {args.issuer!r}: expected an https URL")
    if scheme == "http":
        sys.stderr.write("google_fake: warning: plain http issuer; only for self-tests\n")
    if not 0 <= args.failure_rate <= 1:
        parser.error("--failure-rate must be in 0..1")
    if args.latency_ms < 0 or args.token_lifetime < 1:
        parser.error("--latency-ms must be >= 0 and --token-lifetime >= 1")
    return args, parser


def build_state(args, parser):
    audiences = {}
    for item in args.pool:
        name, _, audience = item.partition("=")
        if name.startswith(IAM_NAME_PREFIX):
            name = name[len(IAM_NAME_PREFIX):]
        audiences.setdefault(name, []).extend(a for a in audience.split(",") if a)
    providers = {}
    for name, allowed in audiences.items():
        try:
            providers[name] = Provider(name, allowed)
        except ValueError as e:
            parser.error(f"--pool: {e}")
    grants = []
    for item in args.allow:
        email, _, member = item.partition("=")
        if "@" not in email or not member:
            parser.error(f"--allow {item!r}: expected SERVICE_ACCOUNT_EMAIL=MEMBER")
        grants.append(Grant(email, member))
    return State(args, providers, grants, Jwks(args.issuer, args.ca_file))


def main(argv=None):
    args, parser = parse_args(argv)
    Handler.state = build_state(args, parser)
    server = serving.serve_in_background(ThreadingHTTPServer((args.host, args.port), Handler))
    return serving.run("google_fake", [server], [f"READY port={server.server_address[1]}"], args.watch_pid)


if __name__ == "__main__":
    sys.exit(main())
