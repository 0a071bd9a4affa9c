"""Encryption at rest for patient contact details and outbox items (Fernet, with key rotation).

MESOCARE_DATA_KEYS is a comma-separated list of Fernet keys: the first encrypts, every key decrypts
(`cryptography`'s MultiFernet). Rotation: put a new key first, restart, run
`mesocare privacy rotate-keys`, then drop the old key. There is no built-in key: without keys every
read or write of contact details refuses with DataKeysMissing.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from mesocare.settings import DATA_KEYS as KEYS_ENV
from mesocare.settings import MissingSecretError, get_settings

_TOKEN_VERSION = 0x80  # first byte of every Fernet token


class DataKeysMissing(RuntimeError):
    """No usable MESOCARE_DATA_KEYS: contact details can be neither written nor read."""


class Undecryptable(RuntimeError):
    """A stored value was encrypted with a key that is no longer in MESOCARE_DATA_KEYS."""


def new_key() -> str:
    """A fresh random Fernet key (for MESOCARE_DATA_KEYS)."""
    return Fernet.generate_key().decode("ascii")


@lru_cache(maxsize=4)
def _keyring(keys: str) -> MultiFernet:
    parts = [k.strip() for k in keys.split(",") if k.strip()]
    if not parts:
        raise DataKeysMissing(
            f"{KEYS_ENV} is not set: refusing to read or write patient contact details "
            "(it must hold one or more comma-separated Fernet keys; `mesocare privacy new-key` makes one)"
        )
    fernets = []
    for i, key in enumerate(parts, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, binascii.Error) as exc:
            raise DataKeysMissing(f"{KEYS_ENV}: key {i} of {len(parts)} is not a valid Fernet key") from exc
    return MultiFernet(fernets)


def keyring(keys: str | None = None) -> MultiFernet:
    """The MultiFernet for `keys` (default: settings.data_keys); raises DataKeysMissing."""
    if keys is None:
        try:
            keys = get_settings().data_keys
        except MissingSecretError:  # a SystemExit there; here an error callers can handle
            keys = ""
    return _keyring(keys)


def require_keys() -> None:
    """Fail fast (DataKeysMissing) in a process that will handle contact details."""
    keyring()


def is_token(value: str | bytes) -> bool:
    """True when `value` looks like a Fernet token (as opposed to plain text from before encryption)."""
    raw = value.encode("ascii", "ignore") if isinstance(value, str) else value
    try:
        head = base64.urlsafe_b64decode(raw[:12] + b"=" * (-len(raw[:12]) % 4))
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= 100 and bool(head) and head[0] == _TOKEN_VERSION


def encrypt_bytes(data: bytes, keys: str | None = None) -> str:
    return keyring(keys).encrypt(data).decode("ascii")


def decrypt_bytes(token: str, keys: str | None = None) -> bytes:
    try:
        return keyring(keys).decrypt(token.encode("ascii"))
    except InvalidToken as exc:
        raise Undecryptable(
            f"a stored value cannot be decrypted with any key in {KEYS_ENV} "
            "(was a key removed before `mesocare privacy rotate-keys` ran?)"
        ) from exc


def encrypt_text(value: str | None, keys: str | None = None) -> str | None:
    """Ciphertext for a DB column (None and "" stay as they are)."""
    if not value:
        return value
    return encrypt_bytes(value.encode("utf-8"), keys)


def decrypt_text(value: str | None, keys: str | None = None) -> str | None:
    """Plain text of a column; a value stored before encryption existed is returned as it is."""
    if not value or not is_token(value):
        return value
    return decrypt_bytes(value, keys).decode("utf-8")


def rotate_text(value: str | None, keys: str | None = None) -> str | None:
    """Re-encrypt with the first key (plain text from before encryption gets encrypted)."""
    if not value:
        return value
    if not is_token(value):
        return encrypt_text(value, keys)
    try:
        return keyring(keys).rotate(value.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise Undecryptable(f"a stored value cannot be decrypted with any key in {KEYS_ENV}") from exc
