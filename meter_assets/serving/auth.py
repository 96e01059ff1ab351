"""Signed, expiring tokens naming one customer: the only way into the usage API.

A token is a JSON Web Token (RFC 7519, PyJWT), HS256, with claims `iss` "meter-assets",
`aud` "usage-api", `sub` the customer id as a decimal string, and `iat` and `exp` as whole
Unix seconds no further apart than `METER_API_TOKEN_MAX_TTL_SECONDS`. Its header names the
key (`kid`: a fingerprint of the secret, never the secret), so keys rotate: the newest secret
(`METER_API_SECRET`; unset, a random one kept in `$METER_DATA_DIR/api_secret`, so the demo's
tokens survive a restart of the API) signs, and `METER_API_PREVIOUS_SECRETS` still verify
until the tokens they signed have expired. Every secret is at least 32 bytes (RFC 7518 3.2).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache

import jwt

from meter_assets.config import settings

ALGORITHM = "HS256"
ISSUER = "meter-assets"
AUDIENCE = "usage-api"
MIN_SECRET_BYTES = 32
# a genuine token is about 250 characters; anything far longer is refused before parsing
MAX_TOKEN_CHARS = 2048
VERIFIED_TOKENS_KEPT = 50_000
# customer ids are PostgreSQL integers
MAX_CUSTOMER_ID = 2**31 - 1
CUSTOMER_ID = re.compile(r"[1-9][0-9]{0,9}")
CLAIMS = ("iss", "aud", "sub", "iat", "exp")


class InvalidToken(Exception):
    """The request does not prove who it is for; the API answers 401 with this reason."""


class WeakSecret(ValueError):
    """A signing secret too short to be safe: the API refuses to start with it."""


def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"meter-api-key:" + secret).hexdigest()[:16]


@dataclass(frozen=True)
class KeyRing:
    """The secret that signs new tokens, and every secret still accepted, by key id; and the
    tokens it has verified (a page sends its token with each request, and checking a JWT costs
    about 100 us: a third of a core at full load). Only the signature and claim checks are
    remembered, never the clock's."""

    signing: bytes
    accepted: dict[str, bytes]
    verified: dict[str, tuple[int, int, int]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, signing: bytes, *previous: bytes) -> KeyRing:
        for secret in (signing, *previous):
            if len(secret) < MIN_SECRET_BYTES:
                raise WeakSecret(f"an API secret must be at least {MIN_SECRET_BYTES} bytes, this one is {len(secret)}")
        return cls(signing, {key_id(secret): secret for secret in (signing, *previous)})

    @property
    def signing_id(self) -> str:
        return key_id(self.signing)


@lru_cache(maxsize=1)
def keys() -> KeyRing:
    s = settings()
    previous = [secret.encode() for secret in s.api_previous_secrets]
    if s.api_secret:
        return KeyRing.of(s.api_secret.encode(), *previous)
    return KeyRing.of(_stored_secret(os.path.join(s.data_dir, "api_secret")), *previous)


def _stored_secret(path: str) -> bytes:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    if not os.path.exists(path):
        # Written whole under a name of its own, then linked in place: a process starting beside
        # this one (API workers, test workers) finds no file or the whole secret, never a half-
        # written one, and the first link wins.
        fd, written = tempfile.mkstemp(dir=folder, prefix=".api_secret.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_urlsafe(48).encode())
            try:
                os.link(written, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(written)
    with open(path, "rb") as f:
        secret = f.read().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise WeakSecret(
            f"{path} holds {len(secret)} bytes; an API secret needs at least {MIN_SECRET_BYTES} "
            "(delete the file for a new random one)"
        )
    return secret


def mint(
    customer_id: int, ttl_seconds: int | None = None, now: float | None = None, ring: KeyRing | None = None
) -> str:
    """A token for one customer, valid for `ttl_seconds` (`METER_API_TOKEN_TTL_SECONDS`), which
    may not exceed `METER_API_TOKEN_MAX_TTL_SECONDS`."""
    s = settings()
    ttl = s.api_token_ttl_seconds if ttl_seconds is None else ttl_seconds
    if not 0 < ttl <= s.api_token_max_ttl_seconds:
        raise ValueError(f"a token lives from 1 to {s.api_token_max_ttl_seconds} seconds, not {ttl}")
    if type(customer_id) is not int or not 1 <= customer_id <= MAX_CUSTOMER_ID:
        raise ValueError(f"a customer id is a whole number from 1 to {MAX_CUSTOMER_ID}, not {customer_id!r}")
    ring = ring or keys()
    issued = int(time.time() if now is None else now)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": str(customer_id), "iat": issued, "exp": issued + ttl}
    return jwt.encode(claims, ring.signing, algorithm=ALGORITHM, headers={"kid": ring.signing_id})


def verify(token: str, now: float | None = None, ring: KeyRing | None = None) -> int:
    """The customer a token names, or InvalidToken saying why not; never another error."""
    ring = ring or keys()
    checked = ring.verified.get(token)
    if checked is None:
        checked = _checked(token, ring)
        if len(ring.verified) >= VERIFIED_TOKENS_KEPT:
            ring.verified.pop(next(iter(ring.verified)))
        ring.verified[token] = checked
    customer, not_before, expires = checked
    now = time.time() if now is None else now
    if now >= expires:
        raise InvalidToken("token expired")
    if not_before > now + 60:
        raise InvalidToken("token not yet valid")
    return customer


def _checked(token: str, ring: KeyRing) -> tuple[int, int, int]:
    """(customer, not valid before, expires) of a token whose key, signature and claims are good."""
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("malformed token")
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as error:
        raise InvalidToken("malformed token") from error
    if not isinstance(kid, str) or kid not in ring.accepted:
        raise InvalidToken("unknown signing key")
    try:
        # times are checked here and by the caller, strictly: PyJWT would read 1.5 or "1" as a time
        claims = jwt.decode(
            token,
            ring.accepted[kid],
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": list(CLAIMS), "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError as error:
        raise InvalidToken("bad signature") from error
    except jwt.MissingRequiredClaimError as error:
        raise InvalidToken(f"invalid claims: {error.claim} is missing") from error
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError) as error:
        raise InvalidToken(f"invalid claims: not a token of {ISSUER} for {AUDIENCE}") from error
    except jwt.exceptions.InvalidSubjectError as error:
        raise InvalidToken("invalid claims: sub must be a customer id") from error
    except jwt.InvalidAlgorithmError as error:
        raise InvalidToken(f"algorithm not allowed: only {ALGORITHM}") from error
    except jwt.DecodeError as error:
        raise InvalidToken("malformed token") from error
    except jwt.PyJWTError as error:
        # the library's own words can quote the token's bytes or a codec: never sent back
        raise InvalidToken("invalid claims") from error
    issued, expires, subject = claims["iat"], claims["exp"], claims["sub"]
    # a token may say it is not valid before a moment (nbf): then not before it
    not_before = claims.get("nbf", issued)
    if type(issued) is not int or type(expires) is not int or type(not_before) is not int:
        raise InvalidToken("invalid claims: iat, exp and nbf must be whole seconds")
    if not 0 < expires - issued <= settings().api_token_max_ttl_seconds:
        raise InvalidToken("invalid claims: lifetime out of range")
    if not isinstance(subject, str) or not CUSTOMER_ID.fullmatch(subject) or int(subject) > MAX_CUSTOMER_ID:
        raise InvalidToken("invalid claims: sub must be a customer id")
    return int(subject), max(issued, not_before), expires
