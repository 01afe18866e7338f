"""Secrets at rest: Fernet with a key derived from the app's secret key, and masking.

Secrets are write-only through the API: responses carry ``has_<field>: true`` and sending the
mask back keeps the stored value (redash's placeholder round-trip).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASK = "********"


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"flowgate-secrets", info=b"fernet-v1"
        ).derive(secret_key.encode("utf-8"))
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

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
            # The secret key changed since this was stored: say so instead of failing obscurely.
            raise ValueError(
                "stored secrets cannot be decrypted with the current secret key"
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
