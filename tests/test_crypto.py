"""Encryption at rest (mesocare.crypto): Fernet keys from MESOCARE_DATA_KEYS, rotation, refusal."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from mesocare import crypto

PHONE = "07700 900123"


@pytest.fixture
def key_a(monkeypatch: pytest.MonkeyPatch) -> str:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("MESOCARE_DATA_KEYS", key)
    return key


def test_round_trip_and_no_plain_text_in_the_token(key_a: str) -> None:
    token = crypto.encrypt_text(PHONE)
    assert token and PHONE not in token and "900123" not in token
    assert crypto.is_token(token)
    assert crypto.decrypt_text(token) == PHONE
    assert crypto.encrypt_text(None) is None and crypto.decrypt_text(None) is None
    assert crypto.encrypt_text(PHONE) != token  # a fresh IV every time


def test_first_key_encrypts_every_key_decrypts(key_a: str, monkeypatch: pytest.MonkeyPatch) -> None:
    old = crypto.encrypt_text(PHONE)
    key_b = crypto.new_key()
    monkeypatch.setenv("MESOCARE_DATA_KEYS", f"{key_b}, {key_a}")
    assert crypto.decrypt_text(old) == PHONE
    new = crypto.encrypt_text(PHONE)
    assert crypto.decrypt_text(new, keys=key_b) == PHONE
    with pytest.raises(crypto.Undecryptable):
        crypto.decrypt_text(new, keys=key_a)


def test_rotation_makes_the_old_key_unneeded(key_a: str, monkeypatch: pytest.MonkeyPatch) -> None:
    old = crypto.encrypt_text(PHONE)
    key_b = crypto.new_key()
    rotated = crypto.rotate_text(old, keys=f"{key_b},{key_a}")
    assert crypto.decrypt_text(rotated, keys=key_b) == PHONE
    with pytest.raises(crypto.Undecryptable, match="MESOCARE_DATA_KEYS"):
        crypto.decrypt_text(old, keys=key_b)


def test_plain_text_from_before_encryption_is_read_then_encrypted_by_rotation(key_a: str) -> None:
    assert not crypto.is_token(PHONE) and not crypto.is_token("ann@example.com")
    assert crypto.decrypt_text(PHONE) == PHONE
    rotated = crypto.rotate_text(PHONE)
    assert crypto.is_token(rotated) and crypto.decrypt_text(rotated) == PHONE


@pytest.mark.parametrize("value", ["", " , ", "not-a-fernet-key"])
def test_missing_or_bad_keys_refuse_clearly(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESOCARE_DATA_KEYS", value)
    with pytest.raises(crypto.DataKeysMissing, match="MESOCARE_DATA_KEYS"):
        crypto.encrypt_text(PHONE)
    with pytest.raises(crypto.DataKeysMissing):
        crypto.require_keys()


def test_unset_keys_refuse_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESOCARE_DATA_KEYS", raising=False)
    with pytest.raises(crypto.DataKeysMissing, match="is not set"):
        crypto.encrypt_text(PHONE)
