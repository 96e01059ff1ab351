"""Signed, expiring tokens naming one customer: the only way into the usage API.

A token is `v1.<payload>.<signature>`: the payload is base64url JSON `{"sub": customer,
"exp": unix seconds}`, the signature HMAC-SHA256 of `v1.<payload>` under the secret
(`METER_API_SECRET`; unset, a random secret kept in `$METER_DATA_DIR/api_secret`, so the
demo's tokens survive a restart of the API).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from functools import lru_cache

from meter_assets.config import settings

VERSION = "v1"


class InvalidToken(Exception):
    """The request does not prove who it is for; the API answers 401 with this reason."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=1)
def secret() -> bytes:
    s = settings()
    if s.api_secret:
        return s.api_secret.encode()
    path = os.path.join(s.data_dir, "api_secret")
    os.makedirs(s.data_dir, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as f:
            return f.read().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_urlsafe(32).encode())
    with open(path, "rb") as f:
        return f.read().strip()


def _signature(signed: str, key: bytes) -> str:
    return _b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())


def mint(customer_id: int, ttl_seconds: int | None = None, now: float | None = None, key: bytes | None = None) -> str:
    """A token for one customer, valid for `ttl_seconds` (`METER_API_TOKEN_TTL_SECONDS`)."""
    ttl = settings().api_token_ttl_seconds if ttl_seconds is None else ttl_seconds
    issued = time.time() if now is None else now
    payload = _b64(json.dumps({"sub": int(customer_id), "exp": int(issued + ttl)}, separators=(",", ":")).encode())
    signed = f"{VERSION}.{payload}"
    return f"{signed}.{_signature(signed, key or secret())}"


def verify(token: str, now: float | None = None, key: bytes | None = None) -> int:
    """The customer a token names, or InvalidToken saying why not."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise InvalidToken("malformed token")
    signed = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(parts[2], _signature(signed, key or secret())):
        raise InvalidToken("bad signature")
    try:
        claims = json.loads(_unb64(parts[1]))
        customer, expires = int(claims["sub"]), int(claims["exp"])
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise InvalidToken("malformed claims") from error
    if (time.time() if now is None else now) >= expires:
        raise InvalidToken("token expired")
    return customer
