"""Tokens at rest: Fernet ciphertext, keyed from configuration, with key rotation."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from plugin.errors import AppError


class TokenCipher:
    """Encrypts with the first key, decrypts with any (so old keys keep working mid-rotation)."""

    def __init__(self, keys: tuple[str, ...] | list[str], secret_key: str):
        # The key derived from SECRET_KEY stays last for decryption only, so tokens stored
        # before TOKEN_ENCRYPTION_KEYS was set still open (and `rotate` moves them over).
        fernet_keys = [Fernet(k) for k in keys] + [Fernet(derive_key(secret_key))]
        self._fernet = MultiFernet(fernet_keys)

    def encrypt(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode())

    def decrypt(self, value: bytes) -> str:
        try:
            return self._fernet.decrypt(value).decode()
        except InvalidToken as error:
            raise AppError("a stored token cannot be decrypted with the configured keys") from error

    def rotate(self, value: bytes) -> bytes:
        """Re-encrypt `value` with the newest key."""
        return self._fernet.rotate(value)


def derive_key(secret_key: str) -> bytes:
    """A Fernet key derived from SECRET_KEY, for installs that set no TOKEN_ENCRYPTION_KEYS."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"amends-token-key", info=b"fernet")
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))
