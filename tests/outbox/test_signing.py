from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from returnguard.outbox.signing import SignatureError, sign, verify

SECRET = "whsec_test"
BODY = b'{"id":"evt_1","type":"return.created"}'
NOW = 1_790_000_000


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert verify(SECRET, BODY, header, now=NOW) == NOW


def test_verify_rejects_a_tampered_body() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(SECRET, BODY.replace(b"created", b"deleted"), header, now=NOW)


def test_verify_rejects_the_wrong_secret() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify("whsec_other", BODY, header, now=NOW)


def test_verify_rejects_a_timestamp_outside_the_tolerance() -> None:
    header = sign(SECRET, BODY, timestamp=NOW - 301)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, BODY, header, now=NOW)
    # A receiver may widen the window, and a timestamp from the future is as suspect.
    assert verify(SECRET, BODY, header, now=NOW, tolerance=600) == NOW - 301
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, BODY, sign(SECRET, BODY, timestamp=NOW + 301), now=NOW)


def test_verify_rejects_a_moved_timestamp_with_the_old_signature() -> None:
    """Replaying an old request with a fresh `t=` does not pass: `t` is signed too."""
    old = sign(SECRET, BODY, timestamp=NOW - 3600)
    mac = old.split("v1=", 1)[1]
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(SECRET, BODY, f"t={NOW},v1={mac}", now=NOW)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=soon,v1=abc", f"t={NOW}"])
def test_verify_rejects_malformed_headers(header: str) -> None:
    with pytest.raises(SignatureError):
        verify(SECRET, BODY, header, now=NOW)


def test_verify_accepts_any_matching_v1_during_secret_rotation() -> None:
    good = sign(SECRET, BODY, timestamp=NOW).split("v1=", 1)[1]
    header = f"t={NOW},v1={'0' * 64},v1={good}"
    assert verify(SECRET, BODY, header, now=NOW) == NOW


def test_sign_and_verify_use_the_current_time_by_default() -> None:
    stamped = verify(SECRET, BODY, sign(SECRET, BODY))
    assert abs(stamped - time.time()) <= 2
