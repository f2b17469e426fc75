"""Self-tests of azure_fake.py: it must accept what Microsoft's SDKs send and reject what Entra and ACR reject.

The fake runs as a subprocess, as the integration tests start it; the issuer is a throwaway OIDC server in this
process (test_google_fake's) whose keys the tests control. azure-identity's ClientAssertionCredential and
azure-containerregistry's ContainerRegistryClient are the clients of the happy path, reaching the real host
names (login.microsoftonline.com, NAME.azurecr.io) through the fake's CONNECT proxy and trusting its test CA —
so the fake provably accepts what Microsoft sends. Run with `python3 -m unittest test_azure_fake` from here.
"""

import json
import os
import re
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

import jwt

from test_google_fake import Issuer, public_jwk, rsa_key

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "azure_fake.py")
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"
NO_PULL = "66666666-7777-8888-9999-000000000000"
UNFEDERATED = "22222222-3333-4444-5555-666666666666"
SUBJECT = "system:serviceaccount:build:puller"
REGISTRY = "myregistry.azurecr.io"
AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE = "https://containerregistry.azure.net/.default"


class Fake:
    def __init__(self, issuer, *args):
        self.dir = tempfile.mkdtemp(prefix="azure-fake-")
        self.log = open(os.path.join(self.dir, "stderr"), "w")
        self.process = subprocess.Popen(
            [sys.executable, FAKE, "--issuer", issuer, "--tls-dir", self.dir, "--tenant", TENANT,
             "--app", CLIENT, "--app", NO_PULL, "--app", UNFEDERATED, "--fic", f"{CLIENT}={SUBJECT}",
             "--fic", f"{NO_PULL}={SUBJECT}", "--registry", REGISTRY, "--no-pull", NO_PULL, *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        proxy = self.process.stdout.readline()
        ready = self.process.stdout.readline()
        match = re.fullmatch(r"READY port=(\d+)\n", ready or "")
        if not match or not proxy.startswith("PROXY port="):
            self.stop()
            raise RuntimeError(f"fake did not start: {proxy!r} {ready!r}")
        self.port = int(match.group(1))
        self.proxy_port = int(proxy.strip().split("=")[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca = os.path.join(self.dir, "ca.crt")
        self.context = ssl.create_default_context(cafile=self.ca)

    def stop(self):
        self.process.terminate()
        self.process.wait(10)
        self.process.stdout.close()
        self.log.close()

    def request(self, path, fields=None, content_type="application/x-www-form-urlencoded", method="POST",
                body=None):
        data = body if body is not None else (urllib.parse.urlencode(fields).encode() if fields else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=10) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), dict(e.headers)

    def control(self, **changes):
        status, body, _ = self.request("/control", body=json.dumps(changes).encode(), content_type="application/json")
        assert status == 200, body
        return body

    def get(self, path):
        return self.request(path, method="GET")[1]


class AzureFakeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.key = rsa_key()
        cls.issuer = Issuer()
        cls.issuer.keys = [public_jwk(cls.key, "k1")]
        cls.fake = Fake(cls.issuer.url)

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()
        cls.issuer.stop()

    def setUp(self):
        self.fake.control(reset_stats=True, fail_next=0, failure_rate=0.0, retry_after=None, failure_status=503)

    def assertion(self, sub=SUBJECT, aud=AUDIENCE, exp_in=600, iss=None, key=None):
        now = int(time.time())
        claims = {"iss": iss or self.issuer.url, "sub": sub, "aud": [aud], "iat": now, "nbf": now,
                  "exp": now + exp_in}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": "k1"})

    def token_fields(self, **overrides):
        fields = {"client_assertion": self.assertion(), "client_assertion_type": ASSERTION_TYPE,
                  "client_id": CLIENT, "grant_type": "client_credentials", "scope": SCOPE}
        fields.update(overrides)
        return {k: v for k, v in fields.items() if v is not None}

    def assertEntraError(self, response, status, code):
        got_status, body, _ = response
        self.assertEqual(got_status, status, body)
        self.assertEqual(body["error_codes"], [code])
        self.assertTrue(body["error_description"].startswith(f"AADSTS{code}: "), body)
        for field in ("error", "timestamp", "trace_id", "correlation_id"):
            self.assertIn(field, body)
        return body

    def entra_token(self, client=CLIENT):
        status, body, _ = self.request_token(client_id=client)
        self.assertEqual(status, 200, body)
        return body["access_token"]

    def request_token(self, tenant=TENANT, **overrides):
        return self.fake.request(f"/{tenant}/oauth2/v2.0/token", self.token_fields(**overrides))

    # --- Microsoft's SDKs as clients -----------------------------------------------------------------

    def test_azure_identity_and_azure_containerregistry_work_end_to_end(self):
        from azure.containerregistry import ContainerRegistryClient
        from azure.identity import ClientAssertionCredential

        proxy = f"http://127.0.0.1:{self.fake.proxy_port}"
        saved = {k: os.environ.get(k) for k in ("HTTPS_PROXY", "REQUESTS_CA_BUNDLE", "NO_PROXY")}
        os.environ.update({"HTTPS_PROXY": proxy, "REQUESTS_CA_BUNDLE": self.fake.ca, "NO_PROXY": ""})
        try:
            credential = ClientAssertionCredential(TENANT, CLIENT, lambda: self.assertion())
            token = credential.get_token(SCOPE)
            self.assertTrue(token.token)
            client = ContainerRegistryClient(f"https://{REGISTRY}", credential,
                                             audience="https://containerregistry.azure.net")
            self.assertEqual(list(client.list_repository_names()), ["hello-world"])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        log = "\n".join(self.fake.get("/log"))
        self.assertIn("CONNECT login.microsoftonline.com:443", log)
        self.assertRegex(log, f"POST host=login.microsoftonline.com /{TENANT}/oauth2/v2.0/token 200")
        self.assertRegex(log, f"POST host={REGISTRY} /oauth2/exchange 200")
        self.assertRegex(log, f"POST host={REGISTRY} /oauth2/token 200")
        stats = self.fake.get("/stats")
        self.assertEqual((stats["token_ok"], stats["exchange_ok"]), (1, 1), stats)
        self.assertNotIn(token.token, log)

    # --- Entra's rules ---------------------------------------------------------------------------------

    def test_every_field_is_required(self):
        for field in ("client_assertion", "client_assertion_type", "client_id", "grant_type", "scope"):
            self.assertEntraError(self.request_token(**{field: None}), 400, 900144)
        self.assertEntraError(self.fake.request(f"/{TENANT}/oauth2/v2.0/token", body=json.dumps(
            self.token_fields()).encode(), content_type="application/json"), 400, 900144)

    def test_unknown_tenant_application_and_bad_scope(self):
        self.assertEntraError(self.request_token(tenant="00000000-0000-0000-0000-000000000000"), 400, 90002)
        body = self.assertEntraError(self.request_token(client_id="99999999-9999-9999-9999-999999999999"),
                                     400, 700016)
        self.assertEqual(body["error"], "unauthorized_client")
        self.assertEntraError(self.request_token(scope="https://containerregistry.azure.net"), 400, 1002012)
        self.assertEntraError(self.request_token(scope="https://management.azure.com/.default"), 400, 500011)
        self.assertEntraError(self.request_token(grant_type="password"), 400, 70003)

    def test_the_assertion_is_verified_like_entra_does(self):
        body = self.assertEntraError(self.request_token(client_assertion=self.assertion(sub="system:serviceaccount:x:y")),
                                     400, 70021)
        self.assertIn("Assertion Subject: 'system:serviceaccount:x:y'", body["error_description"])
        body = self.assertEntraError(self.request_token(client_assertion=self.assertion(aud="other")), 400, 70021)
        self.assertIn("Assertion Audience: 'other'", body["error_description"])
        self.assertEntraError(self.request_token(client_id=UNFEDERATED), 400, 70021)
        self.assertEntraError(self.request_token(client_assertion=self.assertion(iss="https://other.example")),
                              400, 70021)
        self.assertEntraError(self.request_token(client_assertion=self.assertion(exp_in=-400)), 400, 700024)
        self.assertEntraError(self.request_token(client_assertion=self.assertion(key=rsa_key())), 400, 700027)
        self.assertEntraError(self.request_token(client_assertion="not-a-jwt"), 400, 50027)

    # --- ACR's rules -----------------------------------------------------------------------------------

    def test_exchange_rules(self):
        token = self.entra_token()
        fields = {"grant_type": "access_token", "service": REGISTRY, "tenant": TENANT, "access_token": token}
        status, body, _ = self.fake.request("/oauth2/exchange", fields)
        self.assertEqual(status, 200, body)
        claims = jwt.decode(body["refresh_token"], options={"verify_signature": False})
        self.assertAlmostEqual(claims["exp"] - time.time(), 10800, delta=30)
        for change, status_want in [({"tenant": "00000000-0000-0000-0000-000000000000"}, 401),
                                    ({"access_token": self.assertion()}, 401),
                                    ({"service": "other.azurecr.io"}, 400),
                                    ({"grant_type": "refresh_token"}, 400)]:
            status, body, _ = self.fake.request("/oauth2/exchange", {**fields, **change})
            self.assertEqual(status, status_want, (change, body))
            self.assertIn("errors", body)
        refused = {**fields, "access_token": self.entra_token(NO_PULL)}
        status, body, _ = self.fake.request("/oauth2/exchange", refused)
        self.assertEqual((status, body["errors"][0]["code"]), (401, "UNAUTHORIZED"), body)

    # --- knobs -----------------------------------------------------------------------------------------

    def test_injected_failures_carry_retry_after_and_recover(self):
        self.fake.control(fail_next=1, failure_status=429, retry_after=3)
        status, body, headers = self.request_token()
        self.assertEqual(status, 429)
        self.assertEqual(headers.get("Retry-After"), "3")
        self.assertEqual(body["error"], "temporarily_unavailable")
        status, _, _ = self.request_token()
        self.assertEqual(status, 200)
        self.fake.control(refresh_token_lifetime=60)
        fields = {"grant_type": "access_token", "service": REGISTRY, "access_token": self.entra_token()}
        _, body, _ = self.fake.request("/oauth2/exchange", fields)
        claims = jwt.decode(body["refresh_token"], options={"verify_signature": False})
        self.assertAlmostEqual(claims["exp"] - time.time(), 60, delta=10)
        self.fake.control(refresh_token_lifetime=10800)
        stats = self.fake.get("/stats")
        self.assertEqual(stats["injected_failures"], 1, stats)

    def test_the_proxy_refuses_other_hosts(self):
        import socket
        with socket.create_connection(("127.0.0.1", self.fake.proxy_port)) as s:
            s.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            self.assertIn(b" 403 ", s.recv(100))


if __name__ == "__main__":
    unittest.main()
