"""Customer tokens: JWTs that name one customer, expire, rotate keys, and fail only as 401s."""

import hashlib
import hmac
import json
import math
import time

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter_assets.serving.auth import (
    MAX_CUSTOMER_ID,
    InvalidToken,
    KeyRing,
    WeakSecret,
    _stored_secret,
    key_id,
    mint,
    verify,
)

OLD = b"o" * 32
NEW = b"n" * 40
RING = KeyRing.of(NEW, OLD)
NOW = 1_900_000_000


def signed(claims: dict, secret: bytes = NEW, header: dict | None = None, algorithm: str = "HS256") -> str:
    """A token built with PyJWT directly, as an attacker holding (or guessing) a key would."""
    return jwt.encode(claims, secret, algorithm=algorithm, headers={"kid": key_id(secret), **(header or {})})


def hand_made(header: dict, payload: dict, secret: bytes = NEW) -> str:
    """A token assembled by hand (JSON, base64url, HMAC-SHA256), whatever PyJWT would refuse to encode."""

    def part(value: dict) -> str:
        return jwt.utils.base64url_encode(json.dumps(value).encode()).decode()

    signing_input = f"{part(header)}.{part(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{jwt.utils.base64url_encode(signature).decode()}"


def claims(**changes) -> dict:
    base = {"iss": "meter-assets", "aud": "usage-api", "sub": "5000002", "iat": NOW - 10, "exp": NOW + 3600}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not ...}


def test_a_token_names_its_customer_until_it_expires():
    token = mint(5000002, ttl_seconds=60, now=NOW, ring=RING)
    assert jwt.get_unverified_header(token)["kid"] == key_id(NEW)
    assert jwt.decode(
        token, NEW, algorithms=["HS256"], audience="usage-api", options={"verify_exp": False, "verify_iat": False}
    ) == {"iss": "meter-assets", "aud": "usage-api", "sub": "5000002", "iat": NOW, "exp": NOW + 60}
    assert verify(token, now=NOW + 59, ring=RING) == 5000002
    with pytest.raises(InvalidToken, match="expired"):
        verify(token, now=NOW + 60, ring=RING)
    assert verify(signed(claims(sub=str(MAX_CUSTOMER_ID))), now=NOW, ring=RING) == MAX_CUSTOMER_ID


def test_keys_rotate_old_tokens_verify_until_the_old_key_is_dropped():
    old_token = mint(7, ttl_seconds=600, now=NOW, ring=KeyRing.of(OLD))
    assert verify(old_token, now=NOW + 1, ring=RING) == 7, "the previous key still verifies"
    assert jwt.get_unverified_header(mint(7, now=NOW, ring=RING))["kid"] == key_id(NEW), "the new key signs"
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verify(old_token, now=NOW + 1, ring=KeyRing.of(NEW))


def test_mint_refuses_what_verify_would_refuse():
    for ttl in (0, -1, 7 * 86400 + 1, 10**12):
        with pytest.raises(ValueError, match="a token lives"):
            mint(1, ttl_seconds=ttl, ring=RING)
    for customer in (0, -1, MAX_CUSTOMER_ID + 1, True, 2.0, "3"):
        with pytest.raises(ValueError, match="customer id"):
            mint(customer, ring=RING)


def test_secrets_shorter_than_32_bytes_are_refused(tmp_path):
    for weak in (b"", b"x" * 31):
        with pytest.raises(WeakSecret):
            KeyRing.of(weak)
        with pytest.raises(WeakSecret):
            KeyRing.of(NEW, weak)
    empty = tmp_path / "api_secret"
    empty.write_bytes(b"\n")
    with pytest.raises(WeakSecret, match="holds 0 bytes"):
        _stored_secret(str(empty))
    fresh = _stored_secret(str(tmp_path / "new" / "api_secret"))
    assert len(fresh) >= 32 and _stored_secret(str(tmp_path / "new" / "api_secret")) == fresh
    assert oct((tmp_path / "new" / "api_secret").stat().st_mode & 0o777) == "0o600"


def signed_payload(payload: bytes) -> str:
    """A well-signed token whose claims are these bytes, whatever they are."""
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": key_id(NEW)}).encode()).decode()
    signing_input = f"{header}.{jwt.utils.base64url_encode(payload).decode()}"
    signature = hmac.new(NEW, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{jwt.utils.base64url_encode(signature).decode()}"


NOT_UTF8_CLAIMS = signed_payload(b"\xff\xfe{")
HOSTILE = {
    "non-ASCII signature": ("v1.a.\u00e9", "malformed token"),
    "non-ASCII everywhere": ("\u00e9\u00e9.\u00e9.\u00e9", "malformed token"),
    "the old format": ("v1.eyJzdWIiOjF9.c2ln", "malformed token"),
    "empty": ("", "malformed token"),
    "dots only": ("..", "malformed token"),
    "huge": ("a" * 100_000, "malformed token"),
    "no key id": (jwt.encode(claims(), NEW, algorithm="HS256"), "unknown signing key"),
    "key id a list": (hand_made({"alg": "HS256", "kid": [key_id(NEW)]}, claims()), "malformed token"),
    "header a list": (hand_made([key_id(NEW)], claims()), "malformed token"),
    "claims a list": (hand_made({"alg": "HS256", "kid": key_id(NEW)}, [claims()]), "malformed token"),
    "unknown key": (signed(claims(), secret=b"k" * 32), "unknown signing key"),
    "forged with a known key id": (
        jwt.encode(claims(), b"f" * 32, algorithm="HS256", headers={"kid": key_id(NEW)}),
        "bad signature",
    ),
    "alg none": (jwt.encode(claims(), None, algorithm="none", headers={"kid": key_id(NEW)}), "algorithm not allowed"),
    "another algorithm": (signed(claims(), algorithm="HS512"), "algorithm not allowed"),
    "sub 1e30": (signed(claims(sub=1e30)), "invalid claims"),
    "sub true": (signed(claims(sub=True)), "invalid claims"),
    "sub 5000002.9": (signed(claims(sub=5000002.9)), "invalid claims"),
    "sub '5000002.9'": (signed(claims(sub="5000002.9")), "sub must be a customer id"),
    "sub '0'": (signed(claims(sub="0")), "sub must be a customer id"),
    "sub '007'": (signed(claims(sub="007")), "sub must be a customer id"),
    "sub beyond integer": (signed(claims(sub=str(MAX_CUSTOMER_ID + 1))), "sub must be a customer id"),
    "sub in Arabic digits": (signed(claims(sub="\u0663")), "sub must be a customer id"),
    "sub full-width": (signed(claims(sub="\uff11\uff10")), "sub must be a customer id"),
    "sub with a newline": (signed(claims(sub="1\n")), "sub must be a customer id"),
    "no sub": (signed(claims(sub=...)), "invalid claims"),
    "exp Infinity": (signed(claims(exp=math.inf)), "whole seconds"),
    "exp NaN": (signed(claims(exp=math.nan)), "whole seconds"),
    "exp a string": (signed(claims(exp=str(NOW + 3600))), "whole seconds"),
    "exp 1.5 seconds on": (signed(claims(exp=NOW + 1.5)), "whole seconds"),
    "exp true": (signed(claims(exp=True)), "whole seconds"),
    "exp beyond any int": (signed(claims(exp=10**400)), "lifetime"),
    "no exp": (signed(claims(exp=...)), "invalid claims"),
    "a lifetime of years": (signed(claims(exp=NOW + 10 * 365 * 86400)), "lifetime"),
    "issued in the future": (signed(claims(iat=NOW + 3600, exp=NOW + 7200)), "not yet valid"),
    "not valid before an hour on": (signed(claims(nbf=NOW + 3600)), "not yet valid"),
    "not valid before tomorrow": (signed(claims(nbf="tomorrow")), "whole seconds"),
    "not valid before 1.5 seconds on": (signed(claims(nbf=NOW + 1.5)), "whole seconds"),
    # the library would say which codec failed on which byte: the client hears only this
    "claims not UTF-8": (NOT_UTF8_CLAIMS, "^malformed token$"),
    "expired": (signed(claims(iat=NOW - 7200, exp=NOW - 3600)), "expired"),
    "another audience": (signed(claims(aud="billing")), "invalid claims"),
    "another issuer": (signed(claims(iss="someone")), "invalid claims"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_every_hostile_token_is_refused_with_its_reason(case):
    token, reason = HOSTILE[case]
    with pytest.raises(InvalidToken, match=reason):
        verify(token, now=NOW, ring=RING)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    text=st.text(max_size=400),
    header=st.dictionaries(
        st.text(max_size=5),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
            max_leaves=6,
        ),
        max_size=4,
    ),
    payload=st.dictionaries(
        st.sampled_from(["iss", "aud", "sub", "iat", "exp", "nbf", "x"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=12)
        | st.lists(st.integers(), max_size=2),
    ),
)
def test_no_token_raises_anything_but_invalid_token(text, header, payload):
    """Arbitrary text, and arbitrary claims and headers signed with the real key."""
    for token in (text, _signed_anything(payload, header)):
        try:
            customer = verify(token, now=NOW, ring=RING)
        except InvalidToken:
            continue
        assert type(customer) is int and 1 <= customer <= MAX_CUSTOMER_ID
        assert json.loads(jwt.utils.base64url_decode(token.split(".")[1]))["sub"] == str(customer)


def _signed_anything(payload: dict, header: dict) -> str:
    return hand_made({"alg": "HS256", **header, "kid": key_id(NEW)}, payload)


def test_real_time_is_the_default_clock():
    token = mint(3, ttl_seconds=60, ring=RING)
    assert verify(token, ring=RING) == 3
    assert abs(jwt.decode(token, options={"verify_signature": False})["iat"] - time.time()) < 5


def test_verified_tokens_are_remembered_within_a_bound_and_still_expire(monkeypatch):
    import meter_assets.serving.auth as auth

    monkeypatch.setattr(auth, "VERIFIED_TOKENS_KEPT", 5)
    ring = KeyRing.of(NEW)
    tokens = [mint(c, ttl_seconds=60, now=NOW, ring=ring) for c in range(1, 9)]
    assert [verify(t, now=NOW, ring=ring) for t in tokens] == list(range(1, 9))
    assert len(ring.verified) == 5 and set(ring.verified) == set(tokens[3:])
    with pytest.raises(InvalidToken, match="expired"):
        verify(tokens[-1], now=NOW + 60, ring=ring)
    with pytest.raises(InvalidToken, match="bad signature"):
        verify(tokens[-1][:-4] + ("AAAA" if not tokens[-1].endswith("AAAA") else "BBBB"), now=NOW, ring=ring)
    assert len(ring.verified) == 5, "refused tokens are not remembered"


def test_processes_starting_together_share_one_whole_secret(tmp_path):
    """API workers (or test workers) starting at once: each reads the whole secret the first of
    them wrote, never a file still being written."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    path = str(tmp_path / "api_secret")
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("fork")) as pool:
        found = set(pool.map(_stored_secret, [path] * 64))
    assert len(found) == 1 and len(found.pop()) >= 32
    assert os.listdir(tmp_path) == ["api_secret"], "no half-written file is left behind"
