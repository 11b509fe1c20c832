"""Encryption of queued commands at rest in Redis (``--engine-encryption-key``).

A queued command carries the caller's headers, bearer tokens for the private MCP server
included, and Redis writes it to its append-only file. With a key, each command is stored
as ``e1.<key id>.<base64(nonce + AES-256-GCM ciphertext)>``, bound to its request id (the
associated data), so an entry can neither be read nor moved to another request without the
key. Several keys may be given for rotation: the first seals, every one opens. Every instance
on one Redis needs the same keys. Without a key, commands are stored as plain JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

MIN_KEY_CHARS = 32
_PREFIX = "e1."


class SealError(ValueError):
    """A stored command cannot be opened (unknown key, or altered)."""


class Sealer:
    """Seals and opens queued commands; ``Sealer([])`` stores plain JSON."""

    def __init__(self, secrets: list[str]) -> None:
        self._keys: dict[str, Any] = {}
        self._seal_id = ""
        for secret in secrets:
            if len(secret) < MIN_KEY_CHARS:
                from tunnel_core.errors import ConfigError

                raise ConfigError(f"--engine-encryption-key: the key must be at least {MIN_KEY_CHARS} characters "
                                  "(for example: openssl rand -base64 32)")
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            material = hashlib.sha256(b"tunnel-client queue key v1\0" + secret.encode()).digest()
            key_id = hashlib.sha256(b"tunnel-client queue key id\0" + material).hexdigest()[:8]
            self._keys[key_id] = AESGCM(material)
            self._seal_id = self._seal_id or key_id

    @property
    def enabled(self) -> bool:
        return bool(self._seal_id)

    def seal(self, request_id: str, command: dict[str, Any]) -> str:
        raw = json.dumps(command, separators=(",", ":"))
        if not self._seal_id:
            return raw
        nonce = os.urandom(12)
        box = self._keys[self._seal_id].encrypt(nonce, raw.encode(), request_id.encode())
        return f"{_PREFIX}{self._seal_id}.{base64.b64encode(nonce + box).decode('ascii')}"

    def open(self, request_id: str, stored: str) -> dict[str, Any]:
        """The command stored for ``request_id``; SealError when it cannot be opened."""
        if not stored.startswith(_PREFIX):  # queued before a key was set (or without one)
            command = json.loads(stored)
        else:
            key_id, _, body = stored[len(_PREFIX):].partition(".")
            aead = self._keys.get(key_id)
            if aead is None:
                raise SealError(f"sealed with an unknown key (id {key_id}); give every instance the same "
                                "--engine-encryption-key")
            from cryptography.exceptions import InvalidTag

            try:
                data = base64.b64decode(body)
                command = json.loads(aead.decrypt(data[:12], data[12:], request_id.encode()))
            except (ValueError, InvalidTag):
                raise SealError("a sealed command failed authentication") from None
        if not isinstance(command, dict):
            raise SealError("a stored command is not a JSON object")
        return command
