"""Secrets at rest: Fernet with key rotation, and masking.

Keys: ``FLOWGATE_SECRET_KEYS`` (Fernet keys, newest first) followed by a key derived from
the app's ``SECRET_KEY`` (the only key when no list is set). New secrets are encrypted with
the first key (the primary); every key decrypts (``MultiFernet``), so adding a key in front
never breaks what is stored. ``flask --app app secrets rotate`` then re-encrypts every stored
secret with the primary, after which older keys can be dropped from the list.

Secrets are write-only through the API: responses carry ``has_<field>: true`` and sending the
mask back keeps the stored value (redash's placeholder round-trip).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASK = "********"


def derived_key(secret_key: str) -> bytes:
    """The Fernet key derived from the app's secret key (the key before any rotation)."""
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"flowgate-secrets", info=b"fernet-v1"
    ).derive(secret_key.encode("utf-8"))
    return base64.urlsafe_b64encode(derived)


def generate_key() -> str:
    """A new random Fernet key, to put first in FLOWGATE_SECRET_KEYS."""
    return Fernet.generate_key().decode("ascii")


def _fernet(key: str | bytes, position: int) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError, binascii.Error) as exc:
        # Never echo the key: say which one of the list is wrong.
        raise ValueError(
            f"FLOWGATE_SECRET_KEYS entry {position + 1} is not a Fernet key "
            "(32 url-safe base64-encoded bytes; make one with `flask secrets generate-key`)"
        ) from exc


class SecretBox:
    def __init__(self, secret_key: str, keys: Iterable[str] = ()) -> None:
        fernets = [_fernet(key, i) for i, key in enumerate(keys)]
        fernets.append(Fernet(derived_key(secret_key)))
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)

    def encrypt(self, values: Mapping[str, str]) -> str:
        if not values:
            return ""
        return self._fernet.encrypt(json.dumps(dict(values)).encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> dict[str, str]:
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii")))
        except InvalidToken as exc:
            # The key changed since this was stored: say so instead of failing obscurely.
            raise ValueError(
                "stored secrets cannot be decrypted with the configured secret keys"
            ) from exc

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted with the primary key; ValueError if no key opens it."""
        if not token:
            return ""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken as exc:
            raise ValueError(
                "stored secrets cannot be decrypted with the configured secret keys"
            ) from exc


def merge_secrets(stored: Mapping[str, str], incoming: Mapping[str, str | None]) -> dict[str, str]:
    """Apply an update: the mask keeps the stored value, None or "" removes it."""
    merged = dict(stored)
    for field, value in incoming.items():
        if value == MASK:
            continue
        if value is None or value == "":
            merged.pop(field, None)
        else:
            merged[field] = value
    return merged
