"""Sealing and opening secrets (kit/secrets.py): no database, milliseconds."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from returnguard.config import Settings
from returnguard.kit.secrets import (
    Keyring,
    Place,
    SecretKeyMissing,
    SecretUnreadable,
    generate_key,
    key_id,
    key_id_of,
    keyring_for,
    parse_keys,
)

ORG, OTHER_ORG = uuid.uuid4(), uuid.uuid4()
ROW, OTHER_ROW = uuid.uuid4(), uuid.uuid4()
HERE = Place("webhook_endpoints", "secret", ORG, ROW)
SECRET = "whsec_Recognisable-Secret-4711"


def _ring(*keys: str) -> Keyring:
    return Keyring([k for text in keys for k in parse_keys(text)])


def test_a_sealed_secret_opens_to_the_same_value_and_does_not_contain_it() -> None:
    ring = _ring(generate_key())
    sealed = ring.seal(SECRET, HERE)
    assert SECRET not in sealed
    assert sealed.startswith(f"v1:{ring.ids[0]}:")
    assert ring.open(sealed, HERE) == SECRET
    assert ring.seal(SECRET, HERE) != sealed  # a fresh nonce every time


@pytest.mark.parametrize(
    "elsewhere",
    [
        Place("webhook_endpoints", "secret", ORG, OTHER_ROW),
        Place("webhook_endpoints", "secret", OTHER_ORG, ROW),
        Place("refund_providers", "credentials", ORG, ROW),
    ],
    ids=["other row", "other tenant", "other table"],
)
def test_a_secret_moved_to_another_place_does_not_open(elsewhere: Place) -> None:
    ring = _ring(generate_key())
    sealed = ring.seal(SECRET, HERE)
    with pytest.raises(SecretUnreadable, match=f"row {elsewhere.row_id}: does not open"):
        ring.open(sealed, elsewhere)


def test_a_changed_ciphertext_does_not_open() -> None:
    ring = _ring(generate_key())
    sealed = ring.seal(SECRET, HERE)
    body = sealed.rsplit(":", 1)[1]
    flipped = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    for bad in (sealed[:-4], sealed.rsplit(":", 1)[0] + ":" + flipped, "v1:zz:nothing"):
        with pytest.raises(SecretUnreadable) as raised:
            ring.open(bad, HERE)
        assert str(ROW) in str(raised.value) and SECRET not in str(raised.value)


def test_an_unsealed_value_is_refused_unless_marked_as_from_before_encryption() -> None:
    ring = _ring(generate_key())
    assert ring.open("plain:" + SECRET, HERE) == SECRET
    with pytest.raises(SecretUnreadable, match="not a sealed value"):
        ring.open(SECRET, HERE)


def test_the_first_key_seals_and_every_key_opens() -> None:
    old, new = generate_key(), generate_key()
    sealed_old = _ring(old).seal(SECRET, HERE)
    both = _ring(new, old)
    assert both.open(sealed_old, HERE) == SECRET
    assert not both.is_current(sealed_old)
    resealed = both.seal(SECRET, HERE)
    assert key_id_of(resealed) == both.ids[0] == key_id(parse_keys(new)[0])
    assert _ring(new).open(resealed, HERE) == SECRET
    with pytest.raises(SecretUnreadable, match=f"sealed with key {key_id_of(sealed_old)}"):
        _ring(new).open(sealed_old, HERE)


def test_no_key_refuses_to_seal_naming_the_setting() -> None:
    with pytest.raises(SecretKeyMissing, match="RETURNGUARD_SECRET_KEYS"):
        Keyring().seal(SECRET, HERE)


def test_a_sqlite_database_gets_its_own_key_file_on_first_need(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rg.sqlite3'}"
    settings = Settings(database_url=url, secret_keys=None)
    ring, racing = keyring_for(settings), keyring_for(settings)
    key_file = tmp_path / "rg.sqlite3.secret-keys"
    assert ring.key_file == key_file and not key_file.exists()  # nothing stored yet
    sealed = ring.seal(SECRET, HERE)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert keyring_for(settings).open(sealed, HERE) == SECRET  # read back by another
    # A process that had not seen the file yet uses the same key, never one of its own.
    assert racing.open(sealed, HERE) == SECRET
    assert key_id_of(racing.seal(SECRET, HERE)) == ring.ids[0]
    assert SECRET not in key_file.read_text()
    assert [p.name for p in tmp_path.iterdir()] == [key_file.name]  # no drafts left


def test_bad_keys_are_refused_without_being_printed() -> None:
    good = generate_key()
    for bad in ("too-short", good[:-2], good + "AAAA", "not base64 at all, really !!!!!!!!!!!!!!"):
        with pytest.raises(ValidationError) as raised:
            Settings(secret_keys=f"{good},{bad}")
        assert "secret_keys" in str(raised.value) and "key 2" in str(raised.value)
        assert bad not in str(raised.value) and good not in str(raised.value)


def test_keys_are_never_shown_by_the_settings_or_the_keyring() -> None:
    key = generate_key()
    settings = Settings(secret_keys=key)
    ring = keyring_for(settings)
    for shown in (repr(settings), str(settings), repr(ring), str(ring.ids)):
        assert key not in shown
    assert len(key) == 43 and parse_keys(key) == settings.secret_key_list
