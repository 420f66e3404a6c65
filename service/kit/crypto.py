"""Encryption of stored secrets with MultiFernet (reliability-facts §5.1).

The first key encrypts; every key decrypts, so keys rotate by putting a new key first,
running `service rotate-keys`, then dropping the old key.
"""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretDecryptionError(RuntimeError):
    """A stored secret does not decrypt under any configured key (a key was dropped too early)."""


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is required")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretDecryptionError(
                "a stored secret does not decrypt with CONNECTOR_SECRET_KEYS"
            ) from None

    def rotate(self, token: str) -> str:
        """Re-encrypt under the first key (keeps the original timestamp)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretDecryptionError(
                "a stored secret does not decrypt with CONNECTOR_SECRET_KEYS"
            ) from None
