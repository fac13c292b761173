#!/usr/bin/env python3
"""A Tessera business API in plain Python: stdlib WSGI server, PyJWT (Debian's python3-jwt 2.6).

It pins what any verifier outside Node must pin: the keys of the issuer's discovery
document, an algorithm allow-list, iss, aud, typ at+jwt (PyJWT does not check typ),
exp and the claims the contract names. It also follows the revocation feed, so a
logout is refused here within about a second, and it refuses every token when the
feed cannot be read (fail closed), as @tessera/verify does.

    TESSERA_ISSUER=http://localhost:4000 TESSERA_FEED_SECRET=... /usr/bin/python3 app.py
"""

import json
import os
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from http import HTTPStatus
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server

import jwt

ISSUER = os.environ.get("TESSERA_ISSUER") or "http://localhost:4000"
AUDIENCE = os.environ.get("TESSERA_AUDIENCE") or "tessera-api"
FEED_SECRET = os.environ.get("TESSERA_FEED_SECRET") or None
HOST = os.environ.get("HOST") or "127.0.0.1"
PORT = int(os.environ.get("PORT") or 4002)
# Seconds without a complete read of the feed after which every token is refused.
MAX_STALENESS = float(os.environ.get("TESSERA_FEED_MAX_STALENESS") or 30)

BASE = ISSUER.rstrip("/")
# What a Tessera server signs with (SIGNING_ALGORITHMS in packages/protocol). Never
# "none", never HMAC: with HS256 the public key would serve as the shared secret.
ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]
LEEWAY = 5  # seconds of clock skew between machines, as @tessera/verify allows
KID_COOLDOWN = 30  # at most one JWKS refetch for an unknown kid per this many seconds
POLL_INTERVAL = 1  # seconds between reads of the revocation feed


class Refusal(Exception):
    """A refused request, answered with the contract's {error, message} body."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def invalid(message="The token is missing or invalid."):
    return Refusal(401, "invalid_token", message)


def unavailable(message):
    return Refusal(503, "unavailable", message)


class Keys(jwt.PyJWKClient):
    """PyJWKClient (key set cached 5 minutes, refetched on an unknown kid) plus what 2.6
    lacks: a timeout, the last good key set kept through an outage (2.6 drops its cache
    when a fetch fails), and a cooldown on unknown-kid refetches (anyone can mint a kid)."""

    def __init__(self, uri):
        super().__init__(uri, cache_jwk_set=True, lifespan=300)
        self.last_good = None
        self.last_refetch = float("-inf")
        self.lock = threading.Lock()

    def fetch_data(self):
        try:
            with urllib.request.urlopen(self.uri, timeout=5) as response:
                data = json.load(response)
            if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
                raise ValueError("not a JWKS")
        except (OSError, ValueError) as error:
            if self.last_good is None:
                raise unavailable("The auth server's keys cannot be fetched.") from error
            print(f"JWKS fetch failed, keeping the known keys: {error}", file=sys.stderr)
            data = self.last_good
        self.last_good = data
        self.jwk_set_cache.put(data)
        return data

    def get_signing_key(self, kid):
        key = self.match_kid(self.get_signing_keys(), kid)
        if key is None:
            with self.lock:
                if time.monotonic() - self.last_refetch >= KID_COOLDOWN:
                    self.last_refetch = time.monotonic()
                    key = self.match_kid(self.get_signing_keys(refresh=True), kid)
        if key is None:
            raise invalid("The token was signed by an unknown key.")
        return key


_keys = None
_keys_lock = threading.Lock()


def keys():
    """The JWKS client, found through discovery on first use (the auth server may start after us)."""
    global _keys
    with _keys_lock:
        if _keys is None:
            try:
                with urllib.request.urlopen(f"{BASE}/.well-known/openid-configuration", timeout=5) as response:
                    discovery = json.load(response)
            except (OSError, ValueError) as error:
                raise unavailable("The auth server cannot be reached.") from error
            named, jwks_uri = (discovery.get("issuer"), discovery.get("jwks_uri")) if isinstance(discovery, dict) else (None, None)
            # Keys announced for another issuer are not keys for ours: a misconfiguration, or a spoof.
            if named != ISSUER or not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                print(f"discovery at {BASE} names issuer {named!r} and jwks_uri {jwks_uri!r}; expected issuer {ISSUER!r}", file=sys.stderr)
                raise unavailable("The auth server's discovery document does not match TESSERA_ISSUER.")
            _keys = Keys(jwks_uri)
        return _keys


def verify(token):
    """The claims of a valid access token; otherwise raises a Refusal."""
    if len(token) > 16384:
        raise invalid()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise invalid() from None
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    # PyJWT ignores typ. A refresh token (typ refresh+jwt) must never pass for an access token.
    if not isinstance(typ, str) or typ.lower() not in ("at+jwt", "application/at+jwt"):
        raise invalid("This is not an access token (typ must be at+jwt).")
    # The allow-list comes first: the header's alg is the attacker's choice.
    # No JWS extension is understood here ("crit": PyJWT would honour b64).
    if alg not in ALGORITHMS or not isinstance(kid, str) or "crit" in header:
        raise invalid()
    try:
        key = keys().get_signing_key(kid)
    except jwt.PyJWTError:  # a key set with no usable key
        raise invalid("The token was signed by an unknown key.") from None
    # A key signs with the one alg its JWK names (PyJWT 2.6 has no public accessor for it).
    if key._jwk_data.get("alg") != alg:
        raise invalid()
    try:
        claims = jwt.decode(
            token, key.key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER, leeway=LEEWAY,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "sid", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise Refusal(401, "token_expired", "The token has expired.") from None
    except Exception:  # PyJWTError, and the TypeError 2.6 lets out for an odd claim type
        raise invalid() from None
    number = lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)  # noqa: E731
    roles = claims.get("roles")
    if not (number(claims["exp"]) and number(claims["iat"])
            and all(isinstance(claims.get(name), str) for name in ("sub", "sid", "jti", "username"))
            and isinstance(roles, list) and all(isinstance(role, str) for role in roles)):
        raise invalid()
    # A token bound to a DPoP key is good only with a proof by that key, which this example does not check.
    if "cnf" in claims:
        raise invalid("Sender-constrained (DPoP) tokens are not accepted here.")
    return claims


class NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would carry the Authorization header (the feed secret) to wherever a redirect points.
    def redirect_request(self, *args, **kwargs):
        return None


class RevocationFeed:
    """Pages GET /auth/revocations (JSON; the event stream needs more than the stdlib) and
    remembers each revoked session until its access tokens have all expired."""

    def __init__(self):
        self.revoked = {}  # session id -> remember_until (epoch seconds)
        self.cursor = None
        self.up_to_date = None  # time.monotonic() of the last read to the end of the feed
        self.failing = False
        self.opener = urllib.request.build_opener(NoRedirect)

    def run(self):
        while True:
            try:
                self.read_to_end()
                if self.failing:
                    print("revocation feed: reading again", file=sys.stderr)
                self.failing = False
            except Exception as error:  # never let the thread die: staleness makes requests fail closed
                if isinstance(error, urllib.error.HTTPError) and error.code == 400:
                    # A cursor this server does not know (another database, a new epoch): read it all again.
                    self.cursor = None
                if not self.failing:
                    print(f"revocation feed: {error}", file=sys.stderr)
                self.failing = True
            time.sleep(POLL_INTERVAL)

    def read_to_end(self):
        headers = {"Accept": "application/json"}
        if FEED_SECRET:
            headers["Authorization"] = f"Bearer {FEED_SECRET}"
        while True:
            query = "" if self.cursor is None else "?" + urllib.parse.urlencode({"since": self.cursor})
            request = urllib.request.Request(f"{BASE}/auth/revocations{query}", headers=headers)
            with self.opener.open(request, timeout=5) as response:
                page = json.load(response)
            if not isinstance(page, dict) or not isinstance(page.get("revocations"), list) or not isinstance(page.get("cursor"), str):
                raise ValueError("unexpected answer from the revocation feed")
            now = time.time()
            for entry in page["revocations"]:
                if isinstance(entry, dict) and isinstance(entry.get("session_id"), str):
                    self.revoked[entry["session_id"]] = remember_until(entry.get("remember_until"), now)
            self.cursor = page["cursor"]
            if page.get("more") is not True:  # more: the next page is already there, ask at once
                break
        self.up_to_date = time.monotonic()
        now = time.time()
        self.revoked = {sid: until for sid, until in self.revoked.items() if until > now}

    def stale(self):
        return self.up_to_date is None or time.monotonic() - self.up_to_date > MAX_STALENESS

    def check(self, session_id):
        # Fail closed: while the feed is unread, a logout could go unnoticed.
        if self.stale():
            raise unavailable("Revocations cannot be checked right now (the revocation feed is down).")
        until = self.revoked.get(session_id)
        if until is not None and until > time.time():
            raise Refusal(401, "token_revoked", "The session of this token has ended.")


def remember_until(text, now):
    """Until when a revocation matters. A bad date is no reason to forget it (keep a day);
    no access token lives longer than a week."""
    try:
        until = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return now + 86400
    return min(until, now + 7 * 86400)


feed = RevocationFeed()


def authenticate(environ):
    parts = environ.get("HTTP_AUTHORIZATION", "").split(" ")
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1]:
        raise invalid("An access token is required (Authorization: Bearer <token>).")
    claims = verify(parts[1])
    feed.check(claims["sid"])
    return claims


def profile(environ):
    claims = authenticate(environ)
    return {"id": claims["sub"], "username": claims["username"], "roles": claims["roles"],
            "session_id": claims["sid"], "message": f"Hello, {claims['username']}."}


def admin(environ):
    claims = authenticate(environ)
    if "admin" not in claims["roles"]:
        raise Refusal(403, "insufficient_scope", 'This needs the "admin" role.')
    return {"message": f"Welcome to the admin area, {claims['username']}."}


def healthz(environ):
    return {"status": "ok", "revocation_feed": {"up_to_date": not feed.stale(), "remembered": len(feed.revoked)}}


ROUTES = {"/api/profile": profile, "/api/admin": admin, "/healthz": healthz}


def app(environ, start_response):
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
    handler = ROUTES.get(environ.get("PATH_INFO", "")) if environ["REQUEST_METHOD"] == "GET" else None
    try:
        if handler is None:
            raise Refusal(404, "not_found", "Not found.")
        status, body = 200, handler(environ)
    except Refusal as refusal:
        status, body = refusal.status, {"error": refusal.code, "message": refusal.message}
        # RFC 6750: a 401 tells the client to refresh; error_description is printable ASCII without " or \.
        description = "".join(c for c in refusal.message if " " <= c <= "~" and c not in '"\\')
        if status == 401:
            headers.append(("WWW-Authenticate", f'Bearer error="invalid_token", error_description="{description}"'))
        elif refusal.code == "insufficient_scope":
            headers.append(("WWW-Authenticate", f'Bearer error="insufficient_scope", error_description="{description}"'))
        elif status == 503:
            headers.append(("Retry-After", "5"))
    except Exception:
        traceback.print_exc()  # details go to the log, never to the client
        status, body = 500, {"error": "internal_error", "message": "Something went wrong on our side."}
    data = json.dumps(body).encode()
    start_response(f"{status} {HTTPStatus(status).phrase}", headers + [("Content-Length", str(len(data)))])
    return [data]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # one thread per request: a slow client holds up nobody


def main():
    threading.Thread(target=feed.run, name="revocation-feed", daemon=True).start()
    with make_server(HOST, PORT, app, server_class=Server) as server:
        host, port = server.server_address[:2]
        print(f"listening on http://{host}:{port}", flush=True)  # with PORT=0, how a caller learns the port
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
