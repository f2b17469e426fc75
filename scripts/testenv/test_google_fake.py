"""Self-tests of google_fake.py: it must accept what Google accepts and reject what Google rejects.

The fake runs as a subprocess, exactly as the integration tests start it; the issuer is a throwaway OIDC
server in this process (plain http for most tests, https with its own CA for the --ca-file path) whose keys
the tests control. Run with `python3 -m pytest scripts/testenv` or `python3 -m unittest` from this folder.
"""

import datetime
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import testca

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "google_fake.py")
PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/providers/kube-oidc"
DEFAULT_PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/other-pool/providers/kube-default"
AUDIENCE = "sts.googleapis.com/test-audience"
EMAIL = "puller@my-project.iam.gserviceaccount.com"
SUBJECT = "system:serviceaccount:build:puller"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
IAM_SCOPE = "https://www.googleapis.com/auth/iam"
READ_ONLY = "https://www.googleapis.com/auth/cloud-platform.read-only"
EXPIRE_TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private_key, kid):
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return jwk


class Issuer:
    """An OIDC issuer like the kube-apiserver's: discovery document and JWKS, keys changeable at run time."""

    def __init__(self, tls=None):
        self.keys = []
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/openid/v1/jwks"}
                elif self.path == "/openid/v1/jwks":
                    issuer.fetches += 1
                    body = {"keys": list(issuer.keys)}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Fake:
    """google_fake.py as a subprocess, with its stderr in a file to inspect."""

    def __init__(self, *args):
        self.log = tempfile.NamedTemporaryFile(prefix="google-fake-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, FAKE, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        line = self._readline(timeout=20)
        match = re.fullmatch(r"READY port=(\d+)\n", line or "")
        if not match:
            self.stop()
            raise RuntimeError(f"fake did not start: {line!r}: {self.log_text()}")
        self.url = f"http://127.0.0.1:{match.group(1)}"

    def _readline(self, timeout):
        result = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return result[0] if result else None

    def log_text(self):
        with open(self.log.name, encoding="utf-8") as f:
            return f.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process.stdout.close()
        self.log.close()
        os.unlink(self.log.name)

    def request(self, method, path, body=None, content_type=None, headers=None):
        data = None
        all_headers = dict(headers or {})
        if isinstance(body, dict) and content_type == "form":
            data = urllib.parse.urlencode(body).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers["Content-Type"] = content_type or "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.loads(e.read()), dict(e.headers)


def exchange_fields(token, provider=PROVIDER, **overrides):
    """The token-exchange form exactly as google-auth sends it."""
    fields = {
        "grant_type": GRANT,
        "audience": "//iam.googleapis.com/" + provider,
        "scope": IAM_SCOPE,
        "requested_token_type": ACCESS,
        "subject_token": token,
        "subject_token_type": JWT_TYPE,
    }
    for key, value in overrides.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return fields


class FakeTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.key = rsa_key()
        cls.issuer = Issuer()
        cls.issuer.keys = [public_jwk(cls.key, "key-1")]
        cls.stats_dir = tempfile.TemporaryDirectory()
        cls.stats_file = os.path.join(cls.stats_dir.name, "stats.json")
        cls.fake = Fake(
            "--issuer", cls.issuer.url,
            "--pool", f"{PROVIDER}={AUDIENCE}",
            "--pool", DEFAULT_PROVIDER,
            "--allow", f"{EMAIL}={SUBJECT}",
            "--allow", "pool-wide@my-project.iam.gserviceaccount.com=principalSet://iam.googleapis.com/"
            "projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/*",
            "--allow", "one@my-project.iam.gserviceaccount.com=principal://iam.googleapis.com/"
            "projects/123456789012/locations/global/workloadIdentityPools/other-pool/subject/" + SUBJECT,
            "--allow", "anyone@my-project.iam.gserviceaccount.com=*",
            "--stats-file", cls.stats_file,
        )
        cls.secrets_seen = []

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()
        cls.issuer.stop()
        cls.stats_dir.cleanup()

    def token(self, key=None, kid="key-1", algorithm="RS256", **claims):
        now = int(time.time())
        body = {"iss": self.issuer.url, "aud": [AUDIENCE], "sub": SUBJECT, "iat": now, "nbf": now, "exp": now + 600}
        for name, value in claims.items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        token = jwt.encode(body, key or self.key, algorithm=algorithm, headers={"kid": kid} if kid else None)
        self.secrets_seen.append(token)
        return token

    def exchange(self, token, provider=PROVIDER, **overrides):
        return self.fake.request("POST", "/v1/token", exchange_fields(token, provider, **overrides), "form")

    def federated_token(self, provider=PROVIDER, **claims):
        status, body, _ = self.exchange(self.token(**claims), provider)
        self.assertEqual(status, 200, body)
        self.secrets_seen.append(body["access_token"])
        return body["access_token"]

    def generate(self, bearer, email=EMAIL, body=None, project="-"):
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        path = f"/v1/projects/{project}/serviceAccounts/{email}:generateAccessToken"
        status, answer, response_headers = self.fake.request(
            "POST", path, {"scope": [READ_ONLY]} if body is None else body, headers=headers
        )
        if status == 200:
            self.secrets_seen.append(answer["accessToken"])
        return status, answer, response_headers


class TokenExchangeTest(FakeTestCase):
    def test_form_exchange_then_generate_access_token(self):
        status, body, _ = self.exchange(self.token())
        self.assertEqual(status, 200, body)
        self.assertEqual(body["issued_token_type"], ACCESS)
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["expires_in"], 3600)
        self.secrets_seen.append(body["access_token"])

        status, answer, _ = self.generate(body["access_token"])
        self.assertEqual(status, 200, answer)
        self.assertTrue(answer["accessToken"].startswith("ya29."))
        self.assertRegex(answer["expireTime"], EXPIRE_TIME_RE)
        expires = datetime.datetime.fromisoformat(answer["expireTime"].replace("Z", "+00:00"))
        remaining = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        self.assertTrue(3590 < remaining <= 3600, remaining)

    def test_json_body_with_camel_case_and_snake_case_names(self):
        camel = {
            "grantType": GRANT,
            "audience": "//iam.googleapis.com/" + PROVIDER,
            "scope": IAM_SCOPE,
            "requestedTokenType": ACCESS,
            "subjectToken": self.token(),
            "subjectTokenType": "urn:ietf:params:oauth:token-type:id_token",
        }
        status, body, _ = self.fake.request("POST", "/v1/token", camel)
        self.assertEqual(status, 200, body)
        self.secrets_seen.append(body["access_token"])
        status, body, _ = self.fake.request("POST", "/v1/token", exchange_fields(self.token()))
        self.assertEqual(status, 200, body)
        self.secrets_seen.append(body["access_token"])

    def test_default_audiences_when_none_configured(self):
        for audience in ["https://iam.googleapis.com/" + DEFAULT_PROVIDER, "//iam.googleapis.com/" + DEFAULT_PROVIDER]:
            status, body, _ = self.exchange(self.token(aud=audience), DEFAULT_PROVIDER)
            self.assertEqual(status, 200, (audience, body))
            self.secrets_seen.append(body["access_token"])
        status, body, _ = self.exchange(self.token(aud=[AUDIENCE]), DEFAULT_PROVIDER)
        self.assertEqual((status, body["error"]), (400, "invalid_grant"))

    def test_rejects_malformed_requests_in_googles_shape(self):
        token = self.token()
        unknown = "projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/providers/missing"
        cases = [
            ({"grant_type": None}, "invalid_request", "grant_type"),
            ({"grant_type": "client_credentials"}, "unsupported_grant_type", "client_credentials"),
            ({"requested_token_type": None}, "invalid_request", "requested_token_type"),
            ({"requested_token_type": JWT_TYPE}, "invalid_request", "requested_token_type"),
            ({"subject_token_type": None}, "invalid_request", "subject_token_type"),
            ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "invalid_request", "OIDC provider"),
            ({"subject_token_type": "jwt"}, "invalid_request", "subject token type"),
            ({"subject_token": None}, "invalid_request", "subject_token"),
            ({"audience": None}, "invalid_request", "audience"),
            ({"audience": PROVIDER}, "invalid_request", "audience"),
            ({"audience": "//iam.googleapis.com/projects/my-project/locations/global/workloadIdentityPools/"
              "cluster-pool/providers/kube-oidc"}, "invalid_request", "audience"),
            ({"audience": "//iam.googleapis.com/" + unknown}, "invalid_target", "doesn't exist"),
            ({"scope": None}, "invalid_request", "scope"),
            ({"scope": "iam"}, "invalid_scope", "iam"),
        ]
        for overrides, code, words in cases:
            with self.subTest(overrides=overrides):
                status, body, _ = self.exchange(token, **overrides)
                self.assertEqual(status, 400, body)
                self.assertEqual(body["error"], code, body)
                self.assertIn(words, body["error_description"])

    def test_rejects_unknown_json_fields_and_other_content_types(self):
        body = dict(exchange_fields(self.token()), client_id="x")
        status, answer, _ = self.fake.request("POST", "/v1/token", body)
        self.assertEqual((status, answer["error"]["status"]), (400, "INVALID_ARGUMENT"))
        self.assertIn('Unknown name "client_id"', answer["error"]["message"])
        status, answer, _ = self.fake.request("POST", "/v1/token", b"{not json")
        self.assertEqual((status, answer["error"]["status"]), (400, "INVALID_ARGUMENT"))
        status, answer, _ = self.fake.request("POST", "/v1/token", b"grant_type=x", "text/plain")
        self.assertEqual((status, answer["error"]), (400, "invalid_request"))

    def test_verifies_the_subject_token_like_a_workload_identity_pool(self):
        other_key = rsa_key()
        ec_key = ec.generate_private_key(ec.SECP256R1())
        now = int(time.time())
        cases = [
            ("expired", self.token(exp=now - 5), "expired"),
            ("wrong audience", self.token(aud=["https://kubernetes.default.svc"]), "audience"),
            ("audience as string", self.token(aud="something-else"), "audience"),
            ("no audience", self.token(aud=None), "audience"),
            ("wrong issuer", self.token(iss="https://other.example"), "issuer"),
            ("wrong key, same kid", self.token(key=other_key), "signature"),
            ("unknown kid", self.token(key=other_key, kid="key-unknown"), "key ID"),
            ("HS256", self.token(key="shared-secret-of-32-bytes-or-more!!", algorithm="HS256"), "algorithm"),
            ("ES256 with an RSA kid", self.token(key=ec_key, algorithm="ES256"), "signature"),
            ("not a JWT", "not-a-jwt", "parse"),
            ("no sub", self.token(sub=None), "sub"),
            ("no exp", self.token(exp=None), "expiration"),
            ("issued in the future", self.token(iat=now + 3600), "future"),
        ]
        for name, token, words in cases:
            with self.subTest(name):
                status, body, _ = self.exchange(token)
                self.assertEqual((status, body["error"]), (400, "invalid_grant"), body)
                self.assertIn(words, body["error_description"])
        status, body, _ = self.exchange(self.token(sub="system:serviceaccount:" + "n" * 120))
        self.assertEqual((status, body["error"]), (400, "invalid_request"), body)
        self.assertIn("google.subject", body["error_description"])

    def test_refetches_the_jwks_for_an_unknown_kid(self):
        self.federated_token()
        rotated = rsa_key()
        time.sleep(1.1)  # the fake refetches at most once a second
        fetches = self.issuer.fetches
        self.issuer.keys = self.issuer.keys + [public_jwk(rotated, "key-2")]
        try:
            status, body, _ = self.exchange(self.token(key=rotated, kid="key-2"))
            self.assertEqual(status, 200, body)
            self.secrets_seen.append(body["access_token"])
            self.assertEqual(self.issuer.fetches, fetches + 1)
        finally:
            self.issuer.keys = self.issuer.keys[:1]


class GenerateAccessTokenTest(FakeTestCase):
    def test_requires_a_bearer_token_the_fake_issued(self):
        for bearer in [None, "ya29.not-issued-here"]:
            with self.subTest(bearer=bearer):
                status, body, headers = self.generate(bearer)
                self.assertEqual(status, 401)
                self.assertEqual(body["error"]["status"], "UNAUTHENTICATED")
                self.assertIn("invalid authentication credentials", body["error"]["message"])
                self.assertIn("Bearer", headers.get("WWW-Authenticate", ""))

    def test_validates_the_request(self):
        bearer = self.federated_token()
        cases = [
            ({}, "scope"),
            ({"scope": []}, "scope"),
            ({"scope": "not-a-list"}, "scope"),
            ({"scope": [READ_ONLY], "lifetime": "3601s"}, "lifetime"),
            ({"scope": [READ_ONLY], "lifetime": "0s"}, "lifetime"),
            ({"scope": [READ_ONLY], "lifetime": "1h"}, "lifetime"),
            ({"scope": [READ_ONLY], "lifetime": 600}, "lifetime"),
            ({"scope": [READ_ONLY], "audience": "x"}, 'Unknown name "audience"'),
        ]
        for body, words in cases:
            with self.subTest(body=body):
                status, answer, _ = self.generate(bearer, body=body)
                self.assertEqual((status, answer["error"]["status"]), (400, "INVALID_ARGUMENT"), answer)
                self.assertIn(words, answer["error"]["message"])
        status, answer, _ = self.generate(bearer, project="my-project")
        self.assertEqual((status, answer["error"]["status"]), (400, "INVALID_ARGUMENT"))

    def test_denies_subjects_without_a_grant(self):
        bearer = self.federated_token(sub="system:serviceaccount:build:intruder")
        for email in [EMAIL, "one@my-project.iam.gserviceaccount.com", "unknown@my-project.iam.gserviceaccount.com"]:
            with self.subTest(email=email):
                status, answer, _ = self.generate(bearer, email=email)
                self.assertEqual(status, 403, answer)
                self.assertEqual(answer["error"]["status"], "PERMISSION_DENIED")
                self.assertEqual(
                    answer["error"]["message"],
                    "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
                )
        status, _, _ = self.generate(bearer, email="anyone@my-project.iam.gserviceaccount.com")
        self.assertEqual(status, 200)
        status, _, _ = self.generate(bearer, email="pool-wide@my-project.iam.gserviceaccount.com")
        self.assertEqual(status, 200)

    def test_principal_members_are_pool_specific(self):
        email = "one@my-project.iam.gserviceaccount.com"
        status, _, _ = self.generate(self.federated_token(), email=email)
        self.assertEqual(status, 403)
        default_pool = self.federated_token(DEFAULT_PROVIDER, aud="https://iam.googleapis.com/" + DEFAULT_PROVIDER)
        status, _, _ = self.generate(default_pool, email=email)
        self.assertEqual(status, 200)
        status, _, _ = self.generate(default_pool, email="pool-wide@my-project.iam.gserviceaccount.com")
        self.assertEqual(status, 403)

    def test_honours_lifetime_and_the_token_lifetime_knob(self):
        bearer = self.federated_token()
        status, answer, _ = self.generate(bearer, body={"scope": [READ_ONLY], "lifetime": "600s", "delegates": []})
        self.assertEqual(status, 200, answer)
        self.assertAlmostEqual(self.remaining(answer), 600, delta=5)
        self.fake.request("POST", "/control", {"token_lifetime": 120})
        try:
            status, answer, _ = self.generate(bearer, body={"scope": [READ_ONLY], "lifetime": "3600s"})
            self.assertEqual(status, 200, answer)
            self.assertAlmostEqual(self.remaining(answer), 120, delta=5)
        finally:
            self.fake.request("POST", "/control", {"token_lifetime": 3600})

    @staticmethod
    def remaining(answer):
        expires = datetime.datetime.fromisoformat(answer["expireTime"].replace("Z", "+00:00"))
        return (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()

    def test_unknown_paths_and_methods_are_not_found(self):
        for method, path in [("POST", "/v1/unknown"), ("GET", "/v1/token"), ("POST", "/v1/projects/-/serviceAccounts/x")]:
            with self.subTest(path=path):
                status, answer, _ = self.fake.request(method, path, {} if method == "POST" else None)
                self.assertEqual((status, answer["error"]["status"]), (404, "NOT_FOUND"))


class ControlTest(FakeTestCase):
    def test_failure_rate_answers_503_in_googles_shape_and_is_counted(self):
        bearer = self.federated_token()
        self.fake.request("POST", "/control", {"failure_rate": 1})
        try:
            before = self.fake.request("GET", "/stats")[1]
            status, answer, _ = self.exchange(self.token())
            self.assertEqual((status, answer["error"]["status"]), (503, "UNAVAILABLE"))
            status, answer, _ = self.generate(bearer)
            self.assertEqual((status, answer["error"]["code"]), (503, 503))
            after = self.fake.request("GET", "/stats")[1]
            self.assertEqual(after["injected_failures"] - before["injected_failures"], 2)
            self.assertEqual(after["sts_calls"] - before["sts_calls"], 1)
            self.assertEqual(after["iam_calls"] - before["iam_calls"], 1)
        finally:
            self.fake.request("POST", "/control", {"failure_rate": 0})
        self.assertEqual(self.generate(bearer)[0], 200)

    def test_latency_is_applied_and_can_be_changed(self):
        status, settings, _ = self.fake.request("POST", "/control", {"latency_ms": 300})
        self.assertEqual((status, settings["latency_ms"]), (200, 300))
        try:
            started = time.monotonic()
            self.exchange("not-a-jwt")
            self.assertGreaterEqual(time.monotonic() - started, 0.3)
        finally:
            self.fake.request("POST", "/control", {"latency_ms": 0})

    def test_control_rejects_nonsense(self):
        for body in [{"failure_rate": 2}, {"latency_ms": -1}, {"token_lifetime": 0}, {"speed": 1}, [1]]:
            with self.subTest(body=body):
                status, _, _ = self.fake.request("POST", "/control", body)
                self.assertEqual(status, 400)

    def test_stats_count_calls_and_reach_the_stats_file(self):
        self.fake.request("POST", "/control", {"reset_stats": True})
        bearer = self.federated_token()
        self.generate(bearer)
        self.exchange("not-a-jwt")
        status, stats, _ = self.fake.request("GET", "/stats")
        self.assertEqual(status, 200)
        self.assertEqual(
            {k: stats[k] for k in ("sts_calls", "sts_ok", "iam_calls", "iam_ok", "rejected")},
            {"sts_calls": 2, "sts_ok": 1, "iam_calls": 1, "iam_ok": 1, "rejected": 1},
        )
        with open(self.stats_file, encoding="utf-8") as f:
            self.assertEqual(json.load(f), stats)

    def test_each_log_line_begins_with_the_requests_arrival_time(self):
        # Rate-limit tests count requests per second from these times, so they must be the arrival times.
        before = time.time()
        sent = []
        for _ in range(3):
            sent.append(time.time())
            self.exchange(self.token(aud=["not-the-audience"]))
            time.sleep(0.3)
        after = time.time()
        lines = [line for line in self.fake.log_text().splitlines() if " POST /v1/token " in line]
        times = [float(line.split()[1]) for line in lines]
        recent = [t for t in times if t >= before - 0.001]
        self.assertEqual(len(recent), 3, lines)
        self.assertTrue(all(t <= after for t in recent), (recent, after))
        for sent_at, logged_at in zip(sent, recent):
            self.assertGreaterEqual(logged_at, sent_at - 0.002)
            self.assertLess(logged_at - sent_at, 0.25)
        self.assertTrue(all(b - a >= 0.3 for a, b in zip(recent, recent[1:])), recent)

    def test_the_log_never_holds_a_token(self):
        bearer = self.federated_token()
        self.generate(bearer)
        self.generate("ya29.some-bearer-that-is-wrong")
        log = self.fake.log_text()
        self.assertIn("POST /v1/token 200", log)
        self.assertIn(f"/serviceAccounts/{EMAIL}:generateAccessToken 200", log)
        for secret in self.secrets_seen + ["ya29.some-bearer-that-is-wrong"]:
            self.assertNotIn(secret, log)
            self.assertNotIn(secret.split(".")[-1], log)


class HttpsIssuerTest(unittest.TestCase):
    """The real issuer is the kube-apiserver over https with its own CA: --ca-file must make it trusted."""

    def test_fetches_the_jwks_over_tls_with_the_given_ca(self):
        with tempfile.TemporaryDirectory() as directory:
            ca_file, context = self.tls_files(directory)
            issuer = Issuer(tls=context)
            key = rsa_key()
            issuer.keys = [public_jwk(key, "k")]
            now = int(time.time())
            token = jwt.encode(
                {"iss": issuer.url, "aud": AUDIENCE, "sub": SUBJECT, "exp": now + 600},
                key,
                algorithm="RS256",
                headers={"kid": "k"},
            )
            trusted = Fake("--issuer", issuer.url, "--ca-file", ca_file, "--pool", f"{PROVIDER}={AUDIENCE}")
            untrusted = Fake("--issuer", issuer.url, "--pool", f"{PROVIDER}={AUDIENCE}")
            try:
                status, body, _ = trusted.request("POST", "/v1/token", exchange_fields(token), "form")
                self.assertEqual(status, 200, body)
                status, body, _ = untrusted.request("POST", "/v1/token", exchange_fields(token), "form")
                self.assertEqual((status, body["error"]), (400, "invalid_grant"))
                self.assertIn("JWKS", body["error_description"])
            finally:
                trusted.stop()
                untrusted.stop()
                issuer.stop()

    @staticmethod
    def tls_files(directory):
        ca_file, cert_file, key_file = testca.write_ca_and_server(
            directory, "test issuer CA", "127.0.0.1", lifetime=datetime.timedelta(hours=1)
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return ca_file, context


class LifecycleTest(unittest.TestCase):
    def test_sigterm_stops_the_fake_cleanly(self):
        fake = Fake("--issuer", "http://127.0.0.1:1", "--pool", PROVIDER)
        fake.process.send_signal(signal.SIGTERM)
        self.assertEqual(fake.process.wait(10), 0)
        self.assertIn("stopped", fake.log_text())
        fake.stop()

    def test_refuses_to_bind_beyond_loopback(self):
        result = subprocess.run(
            [sys.executable, FAKE, "--host", "0.0.0.0", "--issuer", "https://127.0.0.1:1"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(result.returncode, 2)
        self.assertIn("loopback", result.stderr)

    def test_refuses_malformed_configuration(self):
        for args in [["--pool", "projects/x/pools/y"], ["--allow", "no-at-sign=foo"], ["--failure-rate", "1.5"]]:
            with self.subTest(args=args):
                result = subprocess.run(
                    [sys.executable, FAKE, "--issuer", "https://127.0.0.1:1", *args],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                self.assertEqual(result.returncode, 2, result.stderr)


if __name__ == "__main__":
    unittest.main()
