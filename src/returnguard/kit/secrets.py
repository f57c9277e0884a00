"""Secrets at rest: webhook signing secrets and provider credentials, sealed with AES-GCM.

A sealed value is text, ``v1:<key id>:<base64url(nonce || ciphertext+tag)>``; the key id
is the first 8 hex digits of the key's SHA-256, so a value names the key that opens it
without saying anything about the key. The associated data binds a value to its place
(table, column, organization, row): moved to another row or tenant, or changed by one
bit, it does not open, and nothing is ever returned in its stead.

The keyring comes from ``RETURNGUARD_SECRET_KEYS`` (comma-separated; the first seals, all
open). Without it, a SQLite database keeps a generated key in a file beside the database
(``<database file>.secret-keys``, mode 0600), made the first time a secret is stored; an
in-memory one keeps a key for the life of the process. On PostgreSQL nothing is stored
without the setting (`SecretKeyMissing`, a 503 naming it). docs/operations.md, "Secrets
at rest", tells operators the same.

A value written before migration 0013 is ``plain:<value>``: it still opens (so an upgrade
does not stop deliveries), the worker warns while any is left, and
``returnguard secrets rotate`` seals it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Depends, Request
from sqlalchemy.engine import make_url

from returnguard.errors import ReturnGuardError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from returnguard.config import Settings
    from returnguard.kit.db import Database

log = logging.getLogger("returnguard.secrets")

SETTING = "RETURNGUARD_SECRET_KEYS"
KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = "v1"
PLAIN_PREFIX = "plain:"
PLAIN = "plain"  # what `key_id_of` says for a value from before migration 0013
KEY_FILE_SUFFIX = ".secret-keys"


class SecretKeyMissing(ReturnGuardError):
    """A secret must be stored and no key is configured to seal it."""

    status = 503
    code = "secret_key_missing"
    title = "No key to encrypt secrets"


class SecretUnreadable(ValueError):
    """A stored secret opens with none of the configured keys (tampered, moved to another
    row, or sealed with a key that is no longer configured). Names the row, never a value."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def generate_key() -> str:
    """A new key: 32 random bytes, base64url without padding (43 characters)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_keys(text: str) -> list[bytes]:
    """Keys from the setting's text (comma- or line-separated, order kept, repeats
    dropped); ValueError says which key (by position) is wrong, never what it is."""
    keys: list[bytes] = []
    parts = [p.strip() for p in text.replace("\n", ",").split(",")]
    for position, part in enumerate((p for p in parts if p), start=1):
        try:
            key = _b64decode(part)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES or len(part) not in (43, 44):
            raise ValueError(
                f"key {position} is not 32 bytes in base64url "
                "(`returnguard secrets keygen` makes one)"
            )
        if key not in keys:
            keys.append(key)
    return keys


@dataclass(frozen=True)
class Place:
    """Where a sealed value lives; it opens only there."""

    table: str
    column: str
    organization_id: uuid.UUID
    row_id: uuid.UUID

    def associated_data(self) -> bytes:
        return (
            f"returnguard/{self.table}.{self.column}/{self.organization_id}/{self.row_id}".encode()
        )

    def __str__(self) -> str:
        return f"{self.table}.{self.column} of row {self.row_id}"


@dataclass(frozen=True)
class Key:
    id: str
    material: bytes = field(repr=False)


def key_id_of(sealed: str) -> str:
    """The id of the key a stored value was sealed with, ``plain`` for a value from
    before encryption, ``?`` for anything else."""
    if sealed.startswith(PLAIN_PREFIX):
        return PLAIN
    version, _, rest = sealed.partition(":")
    kid, sep, _ = rest.partition(":")
    return kid if version == VERSION and sep and len(kid) == 8 else "?"


class Keyring:
    """The keys that open stored secrets; the first one seals. Never prints a key."""

    def __init__(self, keys: Iterable[bytes] = (), *, key_file: Path | None = None) -> None:
        self._keys = tuple(Key(key_id(k), k) for k in keys)
        # No configured key: a SQLite database's own key file, made on first need.
        self._key_file = key_file if not self._keys else None
        self._lock = threading.Lock()
        if self._key_file is not None and self._key_file.exists():
            self._keys = tuple(Key(key_id(k), k) for k in _read_key_file(self._key_file))

    def __repr__(self) -> str:
        return f"Keyring(key ids {[k.id for k in self._keys]})"

    @property
    def ids(self) -> list[str]:
        return [k.id for k in self._keys]

    @property
    def key_file(self) -> Path | None:
        return self._key_file

    def current(self) -> Key:
        """The key new values are sealed with; made (SQLite key file) or refused here."""
        if self._keys:
            return self._keys[0]
        with self._lock:
            if not self._keys and self._key_file is not None:
                self._keys = tuple(Key(key_id(k), k) for k in _make_key_file(self._key_file))
        if not self._keys:
            raise SecretKeyMissing(
                f"no key to encrypt secrets with: set {SETTING} "
                "(`returnguard secrets keygen` makes a key) and restart"
            )
        return self._keys[0]

    def seal(self, plain: str, place: Place) -> str:
        key = self.current()
        nonce = os.urandom(NONCE_BYTES)
        box = AESGCM(key.material).encrypt(nonce, plain.encode(), place.associated_data())
        return f"{VERSION}:{key.id}:{base64.urlsafe_b64encode(nonce + box).rstrip(b'=').decode()}"

    def open(self, sealed: str, place: Place) -> str:
        """The value, or SecretUnreadable naming the place (and the key id it asks for)."""
        if sealed.startswith(PLAIN_PREFIX):
            return sealed[len(PLAIN_PREFIX) :]
        kid = key_id_of(sealed)
        if kid in ("?", PLAIN):
            raise SecretUnreadable(f"{place}: not a sealed value")
        key = next((k for k in self._keys if k.id == kid), None)
        if key is None and self._key_file is not None and self._key_file.exists():
            # Another process (or keyring) made the key file since this one was read.
            with self._lock:
                self._keys = tuple(Key(key_id(k), k) for k in _read_key_file(self._key_file))
            key = next((k for k in self._keys if k.id == kid), None)
        if key is None:
            configured = ", ".join(self.ids) or "none"
            raise SecretUnreadable(
                f"{place}: sealed with key {kid}, which is not configured (configured: "
                f"{configured})"
            )
        try:
            raw = _b64decode(sealed.split(":", 2)[2])
            plain = AESGCM(key.material).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], place.associated_data()
            )
            return plain.decode()
        except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError):
            raise SecretUnreadable(
                f"{place}: does not open with key {kid} (changed, or moved from another row)"
            ) from None

    def is_current(self, sealed: str) -> bool:
        return bool(self._keys) and key_id_of(sealed) == self._keys[0].id


def _read_key_file(path: Path) -> list[bytes]:
    try:
        return parse_keys(path.read_text())
    except ValueError as exc:
        raise ValueError(f"secret key file {path}: {exc}") from None


def _make_key_file(path: Path) -> list[bytes]:
    """Write a new key file (0600) unless another process just did; read what is there.
    The key is written in full to a file of its own and linked into place, so no process
    ever reads a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(generate_key() + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(draft, path)
    except FileExistsError:
        return _read_key_file(path)  # another process was first: its key it is
    finally:
        draft.unlink(missing_ok=True)
    log.warning(
        "generated a key for secrets at rest in %s: back it up with the database, "
        "or set %s (docs/operations.md, 'Secrets at rest')",
        path,
        SETTING,
    )
    return _read_key_file(path)


_MEMORY_KEYS: dict[str, bytes] = {}
_MEMORY_LOCK = threading.Lock()


def key_file_for(database_url: str) -> Path | None:
    """The key file of a SQLite database file (None for PostgreSQL or in memory)."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).with_name(Path(url.database).name + KEY_FILE_SUFFIX)


def keyring_for(settings: Settings, database_url: str | None = None) -> Keyring:
    """The keyring of a database: the configured keys, else (SQLite) its key file."""
    url = database_url or settings.database_url
    configured = settings.secret_key_list
    if configured:
        return Keyring(configured)
    path = key_file_for(url)
    if path is not None:
        return Keyring(key_file=path)
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        # An in-memory database lives as long as the process: so does its key.
        with _MEMORY_LOCK:
            key = _MEMORY_KEYS.setdefault(url, os.urandom(KEY_BYTES))
        return Keyring([key])
    return Keyring()


def default_keyring(database_url: str) -> Keyring:
    """The keyring from the environment's settings, for code given no settings (the demo,
    the benchmarks)."""
    from returnguard.config import Settings

    return keyring_for(Settings(), database_url)


def get_keyring(request: Request) -> Keyring:
    """The keyring of the app's settings and database."""
    return keyring_for(request.app.state.settings, request.app.state.db.url)


KeyringDep = Annotated[Keyring, Depends(get_keyring)]


def warn_if_unsealed(what: str, found: Sequence[str], keyring: Keyring) -> None:
    """Say loudly, at worker start, what the operator still has to do."""
    plain = sum(1 for kid in found if kid == PLAIN)
    if plain:
        log.warning(
            "%d %s stored in plain text from before encryption: run `returnguard secrets "
            "rotate` (docs/operations.md, 'Secrets at rest')",
            plain,
            what,
        )
    known = set(keyring.ids)
    missing = sorted({kid for kid in found if kid != PLAIN and kid not in known})
    if missing:
        log.error(
            "%s sealed with key(s) %s that are not configured: they cannot be used",
            what,
            ", ".join(missing),
        )
    if not known and keyring.key_file is None:
        log.warning("%s is not set: new %s cannot be stored", SETTING, what)


@dataclass(frozen=True)
class StoredSecrets:
    """A column of sealed values: ``table.column``, each row with ``id`` and
    ``organization_id`` (what a value is bound to). An empty value holds nothing."""

    kind: str
    table: str
    column: str

    def place(self, organization_id: uuid.UUID, row_id: uuid.UUID) -> Place:
        return Place(self.table, self.column, organization_id, row_id)


@dataclass
class RotationCount:
    kind: str
    found: int = 0
    from_plain: int = 0  # sealed for the first time (stored before migration 0013)
    resealed: int = 0  # sealed again under the current key
    current: int = 0  # already under the current key: left alone
    changed_meanwhile: int = 0  # rewritten by someone else during the run: left alone
    key_ids: dict[str, int] = field(default_factory=dict)  # before the run
    unreadable: list[str] = field(default_factory=list)


def rotate(
    db: Database, keyring: Keyring, stores: Sequence[StoredSecrets], *, batch_size: int = 200
) -> list[RotationCount]:
    """Seal every stored value of ``stores`` under the keyring's first key, ``batch_size``
    rows per transaction. Idempotent: values already under that key are not touched, and
    a value changed by someone else meanwhile is left as they wrote it. A value that does
    not open is counted (named in ``unreadable``) and left as it is."""
    counts = []
    for store in stores:
        count = RotationCount(store.kind)
        t = sa.table(
            store.table,
            sa.column("id", sa.Uuid()),
            sa.column("organization_id", sa.Uuid()),
            sa.column(store.column, sa.Text()),
        )
        value = t.c[store.column]
        last: uuid.UUID | None = None
        while True:
            with db.session() as session:
                stmt = sa.select(t.c.id, t.c.organization_id, value).where(value != "")
                if last is not None:
                    stmt = stmt.where(t.c.id > last)
                rows = session.execute(stmt.order_by(t.c.id).limit(batch_size)).all()
                for row_id, organization_id, sealed in rows:
                    _rotate_one(session, keyring, store, t, count, row_id, organization_id, sealed)
            if len(rows) < batch_size:
                break
            last = rows[-1][0]
        counts.append(count)
    return counts


def _rotate_one(
    session: Session,
    keyring: Keyring,
    store: StoredSecrets,
    t: sa.TableClause,
    count: RotationCount,
    row_id: uuid.UUID,
    organization_id: uuid.UUID,
    sealed: str,
) -> None:
    count.found += 1
    kid = key_id_of(sealed)
    count.key_ids[kid] = count.key_ids.get(kid, 0) + 1
    place = store.place(organization_id, row_id)
    try:
        plain = keyring.open(sealed, place)
    except SecretUnreadable as exc:
        count.unreadable.append(str(exc))
        return
    if keyring.is_current(sealed):
        count.current += 1
        return
    value = t.c[store.column]
    done = session.execute(
        sa.update(t)
        .where(t.c.id == row_id, value == sealed)
        .values({store.column: keyring.seal(plain, place)})
    )
    if not getattr(done, "rowcount", 0):
        count.changed_meanwhile += 1
    elif kid == PLAIN:
        count.from_plain += 1
    else:
        count.resealed += 1
