#!/usr/bin/env python3
"""moto's server (STS, ECR, IAM) for the integration tests, with two small changes and a call log.

What differs from `moto_server -H 127.0.0.1 -p PORT`, and why:

1. With authentication on, moto answers an *unsigned* STS `AssumeRoleWithWebIdentity` with HTTP 500: its
   authenticator reads the `Authorization` header of every request, but AWS takes this one action unsigned
   (the web identity token is the credential). Here exactly that case -- STS, action
   AssumeRoleWithWebIdentity, no `Authorization` header -- skips authentication. Every other request,
   ECR's above all, still goes through moto's SigV4 check (botocore's signer), session token check and IAM
   policy evaluation. moto does not validate the web identity token either way.
2. With `--verify-web-identity` (off by default), AssumeRoleWithWebIdentity is checked as AWS checks it,
   which moto never does: the token's issuer must be an IAM OIDC provider of the account, its signature must
   verify with the keys published through the issuer's OIDC discovery (fetched with `--ca-file`), it must not
   have expired, its `aud` must be one of the provider's client IDs, the role must exist, and its trust policy
   must allow the action for that provider with its `StringEquals`/`StringLike` conditions on `ISSUER:sub`
   and `ISSUER:aud` met. Refusals carry AWS's codes and messages (`InvalidIdentityToken`,
   `ExpiredTokenException`, `AccessDenied`). Roles and OIDC providers are created through moto's IAM API.
3. moto never looks at when a request was signed; AWS refuses a signature more than five minutes from its own
   clock. Here a signed request whose `X-Amz-Date` is further off than that is refused as AWS refuses it:
   JSON APIs (ECR) with 400 `InvalidSignatureException` "Signature expired: ..." (or "Signature not yet
   current: ..."), query APIs (STS, IAM) with 403 `SignatureDoesNotMatch`; every answer carries `Date`. So a
   skewed signing clock shows up in tests as it does against AWS.
4. It binds the port itself (`--port 0` picks a free one) and prints `READY port=N` once it accepts
   connections, so the test harness needs no port guessing and no polling; `--watch-pid PID` stops it when
   process PID is gone, so a test run that dies leaves no server behind.

The call log: every AWS API request (not `/moto-api/...`) is recorded with its action, HTTP status, role ARN and
role session name -- for STS from the request form, for signed requests from the assumed role whose access
key signed it. `GET /ipsp/calls` returns them as JSON; `POST /ipsp/calls/reset` clears them. Tests count
STS calls with it. Tokens, keys and signatures are never recorded or logged.

Authentication is switched on by the caller after seeding IAM, as with plain moto: `POST /moto-api/reset-auth`.
"""

import argparse
import calendar
import fnmatch
import io
import json
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from xml.sax.saxutils import escape

import jwt
from moto.iam.models import iam_backends

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse
from werkzeug.serving import make_server

import serving  # the stand-ins' shared life cycle (this directory)

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


ACCOUNT_ID = "123456789012"


class Refusal(Exception):
    """An STS error answer: HTTP status, AWS error code, message."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_authorized():
    return Refusal(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")


class WebIdentityVerifier:
    """What AWS STS checks before AssumeRoleWithWebIdentity succeeds (see change 2)."""

    def __init__(self, ca_file):
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def _get_json(self, url, accept):
        request = urllib.request.Request(url, headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=5, context=self.context) as response:
            return json.loads(response.read(1 << 20))

    def _keys(self, issuer):
        try:
            discovery = self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration", "application/json")
            jwks = self._get_json(discovery["jwks_uri"], "application/jwk-set+json, application/json;q=0.9")
            return {k.get("kid"): jwt.PyJWK.from_dict(k) for k in jwks.get("keys", [])}
        except Exception:  # AWS says the same whatever went wrong
            raise Refusal(
                400,
                "InvalidIdentityToken",
                "Couldn't retrieve verification key from your identity provider,  please reference "
                "AssumeRoleWithWebIdentity documentation for requirements",
            )

    def verify(self, role_arn, token):
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.exceptions.PyJWTError:
            raise Refusal(400, "InvalidIdentityToken", "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)")
        issuer = claims.get("iss", "")
        host_path = issuer[len("https://"):] if issuer.startswith("https://") else issuer
        iam = iam_backends[ACCOUNT_ID]["aws"]
        provider = next((p for p in iam.open_id_providers.values() if p.url == host_path), None)
        if provider is None:
            raise Refusal(400, "InvalidIdentityToken", f"No OpenIDConnect provider found in your account for {issuer}")
        key = self._keys(issuer).get(header.get("kid"))
        if key is None:
            raise Refusal(400, "InvalidIdentityToken", "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements")
        try:
            jwt.decode(token, key=key, algorithms=[header.get("alg", "RS256")], options={"verify_aud": False})
        except jwt.exceptions.ExpiredSignatureError:
            raise Refusal(400, "ExpiredTokenException", "Token expired: current date/time must be before the expiration date/time")
        except jwt.exceptions.PyJWTError:
            raise Refusal(400, "InvalidIdentityToken", "The web identity token that was passed could not be validated by AWS.")
        audiences = claims.get("aud", [])
        audiences = [audiences] if isinstance(audiences, str) else audiences
        audience = next((a for a in audiences if a in provider.client_id_list), None)
        if audience is None:
            raise Refusal(400, "InvalidIdentityToken", "Incorrect token audience")
        try:
            role = iam.get_role(role_arn.rsplit("/", 1)[-1])
        except Exception:
            raise not_authorized()
        if role.arn != role_arn or not self._trusts(role, provider.arn, host_path, claims.get("sub", ""), audience):
            raise not_authorized()

    @staticmethod
    def _trusts(role, provider_arn, host_path, subject, audience):
        document = role.assume_role_policy_document
        if isinstance(document, str):
            document = json.loads(urllib.parse.unquote(document) if document.startswith("%") else document)
        statements = document.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else statements
        values = {f"{host_path}:sub": subject, f"{host_path}:aud": audience}
        as_list = lambda v: v if isinstance(v, list) else [v]
        for statement in statements:
            if statement.get("Effect") != "Allow":
                continue
            if not any(a in ("sts:AssumeRoleWithWebIdentity", "sts:*", "*") for a in as_list(statement.get("Action", []))):
                continue
            if provider_arn not in as_list(statement.get("Principal", {}).get("Federated", [])):
                continue
            met = True
            for operator, conditions in statement.get("Condition", {}).items():
                for key, wanted in conditions.items():
                    have = values.get(key)
                    if operator == "StringEquals":
                        met &= have is not None and have in as_list(wanted)
                    elif operator == "StringLike":
                        met &= have is not None and any(fnmatch.fnmatchcase(have, w) for w in as_list(wanted))
                    else:
                        met = False  # an operator this stand-in does not know never grants
            if met:
                return True
        return False


def refusal_response(start_response, refusal):
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{escape(refusal.code)}</Code><Message>{escape(refusal.message)}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()
    reason = {400: "Bad Request", 403: "Forbidden"}.get(refusal.status, "Error")
    start_response(
        f"{refusal.status} {reason}", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))]
    )
    return [body]


MAX_SIGNING_SKEW = 300


class SigningTimeCheck:
    """Change 3: refuse signatures made more than five minutes from this server's clock, as AWS does."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        amz_date = environ.get("HTTP_X_AMZ_DATE", "")
        if environ.get("HTTP_AUTHORIZATION", "").startswith("AWS4-HMAC-SHA256") and amz_date:
            try:
                signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
            except ValueError:
                signed_at = None
            now = time.time()
            if signed_at is not None and abs(now - signed_at) > MAX_SIGNING_SKEW:
                fmt = lambda t: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))  # noqa: E731
                if signed_at < now:
                    message = (f"Signature expired: {amz_date} is now earlier than {fmt(now - MAX_SIGNING_SKEW)} "
                               f"({fmt(now)} - 5 min.)")
                else:
                    message = (f"Signature not yet current: {amz_date} is still later than "
                               f"{fmt(now + MAX_SIGNING_SKEW)} ({fmt(now)} + 5 min.)")
                if environ.get("HTTP_X_AMZ_TARGET"):
                    status = "400 Bad Request"
                    ctype = "application/x-amz-json-1.1"
                    body = json.dumps({"__type": "InvalidSignatureException", "message": message})
                else:
                    status = "403 Forbidden"
                    ctype = "text/xml"
                    body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>"
                            f"<Message>{message}</Message></Error><RequestId>ipsp</RequestId></ErrorResponse>")
                data = body.encode("utf-8")
                start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
                return [data]
        return self.app(environ, start_response)


class CallLog:
    """WSGI middleware that records each API call and serves the record at /ipsp/calls."""

    def __init__(self, app, verifier=None):
        self.app = app
        self.verifier = verifier
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

        refusal = None
        if self.verifier and call["action"] == "AssumeRoleWithWebIdentity" and not call["signed"]:
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
            try:
                self.verifier.verify(form.get("RoleArn", ""), form.get("WebIdentityToken", ""))
            except Refusal as e:
                refusal = e
        if refusal is not None:
            result = refusal_response(recording_start_response, refusal)
        else:
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    parser.add_argument("--watch-pid", type=int, help="stop when this process is gone")
    parser.add_argument(
        "--verify-web-identity", action="store_true", help="check AssumeRoleWithWebIdentity as AWS does (change 2)"
    )
    parser.add_argument("--ca-file", help="PEM bundle that verifies the token issuers' TLS certificates")
    args = parser.parse_args(argv)
    serving.require_loopback(parser, args.host)

    allow_unsigned_assume_role_with_web_identity()
    verifier = WebIdentityVerifier(args.ca_file) if args.verify_web_identity else None
    app = CallLog(SigningTimeCheck(DomainDispatcherApplication(create_backend_app)), verifier)
    server = make_server(serving.LOOPBACK, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    serving.serve_in_background(server)
    return serving.run("moto_server", [server], [f"READY port={server.server_port}"], args.watch_pid)


if __name__ == "__main__":
    sys.exit(main())
