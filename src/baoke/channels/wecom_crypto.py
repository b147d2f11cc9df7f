"""WeCom's callback encryption (WXBizMsgCrypt), on ``cryptography``.

WeCom signs and encrypts every callback to the URL an app registers, and expects the
URL-verification echo and any passive reply in the same scheme (developer.work.weixin.qq.com
document 91144, 加解密方案说明):

* ``AESKey = Base64_Decode(EncodingAESKey + "=")``: 32 bytes, AES-256 in CBC mode with
  ``IV = AESKey[:16]``; PKCS#7 padding to a multiple of **32** bytes (not the AES block of 16).
* Plaintext: ``random(16) ‖ len(msg) as 4 bytes big-endian ‖ msg ‖ ReceiveId``, where
  ReceiveId is the CorpID for a self-built app's callbacks. It is checked after decrypting,
  so a callback meant for another corp (or another app's key) is refused.
* ``msg_signature = sha1(''.join(sorted([token, timestamp, nonce, msg_encrypt])))``, hex.

Every failure raises :class:`WecomCryptoError` with one message that says what to check,
never the token, the key or the ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from baoke.errors import BaokeError

__all__ = [
    "WXBizMsgCrypt",
    "WecomCrypto",
    "WecomCryptoError",
    "parse_xml",
    "signature",
]

_BLOCK = 32  # WeCom pads to 32 bytes, whatever the AES block size
_RANDOM = 16
_KEY_RE = re.compile(r"^[A-Za-z0-9]{43}$")
# A callback body is a few hundred bytes; anything far larger is not from WeCom.
_MAX_XML = 1 << 20


class WecomCryptoError(BaokeError):
    """A WeCom callback that fails its signature, its decryption or its ReceiveId check."""


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """The hex ``msg_signature`` of one callback: SHA-1 of the four strings sorted and joined."""
    joined = "".join(sorted([token, str(timestamp), str(nonce), encrypt]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()


def parse_xml(text: str) -> ET.Element:
    """Parse a callback's XML, refusing DTDs and entities.

    defusedxml is not a dependency, so this uses the standard library's parser. The outer
    envelope must be parsed *before* its signature can be checked (the signature covers the
    ``Encrypt`` text inside it), so the unauthenticated input is kept small and without any
    DOCTYPE or ENTITY declaration: the entity-expansion attacks need one of those.
    """
    if len(text) > _MAX_XML:
        raise WecomCryptoError("the WeCom callback body is too large to be a callback")
    head = text.upper()
    if "<!DOCTYPE" in head or "<!ENTITY" in head:
        raise WecomCryptoError("the WeCom callback body declares a DTD; WeCom never sends one")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise WecomCryptoError(f"the WeCom callback body is not well-formed XML ({exc})") from exc


def _cdata(value: str) -> str:
    # A CDATA section cannot hold "]]>": split it over two sections.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


@dataclass(frozen=True)
class WecomCrypto:
    """The crypto of one callback URL: its Token, its EncodingAESKey and the corp's id.

    ``receive_id`` is the CorpID for a self-built app (a suite's callbacks use the SuiteId).
    """

    token: str
    encoding_aes_key: str
    receive_id: str

    def __post_init__(self) -> None:
        if not self.token:
            raise WecomCryptoError("the WeCom callback Token is empty (BAOKE_WECOM_TOKEN)")
        if not _KEY_RE.match(self.encoding_aes_key or ""):
            raise WecomCryptoError(
                "the WeCom EncodingAESKey must be 43 letters and digits, as the admin console "
                "shows it (BAOKE_WECOM_AES_KEY)"
            )
        if not self.receive_id:
            raise WecomCryptoError("the WeCom corp id (ReceiveId) is empty")

    def __repr__(self) -> str:
        # The dataclass repr would print the token and the key.
        return f"WecomCrypto(receive_id={self.receive_id!r})"

    @property
    def _key(self) -> bytes:
        return base64.b64decode(self.encoding_aes_key + "=")

    # -- the three operations of Tencent's sample library --------------------------------------

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The plaintext to answer WeCom's GET URL verification with (``echostr`` URL-decoded).

        The answer must be returned as it is: no quotes, no BOM, no newline.
        """
        self._check_signature(msg_signature, timestamp, nonce, echostr)
        return self.decrypt_text(echostr)

    def decrypt(self, msg_signature: str, timestamp: str, nonce: str, post_body_xml: str) -> str:
        """The decrypted XML of a callback POST body (``<xml><Encrypt>…</Encrypt>…</xml>``)."""
        root = parse_xml(post_body_xml)
        node = root.find("Encrypt")
        encrypted = (node.text or "").strip() if node is not None else ""
        if not encrypted:
            raise WecomCryptoError("the WeCom callback body has no Encrypt element")
        self._check_signature(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt_text(encrypted)

    def encrypt(self, reply_xml: str, nonce: str, timestamp: str | int | None = None) -> str:
        """The encrypted, signed passive reply: ``<xml><Encrypt/><MsgSignature/><TimeStamp/>
        <Nonce/></xml>``. ``timestamp`` defaults to now."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        encrypted = self.encrypt_text(reply_xml)
        signed = signature(self.token, stamp, nonce, encrypted)
        return (
            f"<xml><Encrypt>{_cdata(encrypted)}</Encrypt>"
            f"<MsgSignature>{_cdata(signed)}</MsgSignature>"
            f"<TimeStamp>{_cdata(stamp)}</TimeStamp>"
            f"<Nonce>{_cdata(nonce)}</Nonce></xml>"
        )

    # -- the primitives ---------------------------------------------------------------------------

    def encrypt_text(self, text: str, random_prefix: bytes | None = None) -> str:
        """``msg_encrypt`` for ``text``: base64 of the AES-CBC ciphertext.

        ``random_prefix`` (16 bytes) is for reproducible tests; it is random otherwise.
        """
        prefix = os.urandom(_RANDOM) if random_prefix is None else random_prefix
        if len(prefix) != _RANDOM:
            raise WecomCryptoError("the random prefix must be 16 bytes")
        body = text.encode("utf-8")
        plain = prefix + struct.pack(">I", len(body)) + body + self.receive_id.encode("utf-8")
        pad = _BLOCK - len(plain) % _BLOCK
        plain += bytes([pad]) * pad
        key = self._key
        encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")

    def decrypt_text(self, encrypted: str) -> str:
        """The message inside ``msg_encrypt``, after checking its padding and its ReceiveId."""
        try:
            cipher_text = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WecomCryptoError("the WeCom ciphertext is not valid base64") from exc
        if not cipher_text or len(cipher_text) % 16:
            raise WecomCryptoError(
                "the WeCom ciphertext length is not a whole number of AES blocks"
            )
        key = self._key
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        plain = decryptor.update(cipher_text) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= _BLOCK or plain[-pad:] != bytes([pad]) * pad:
            # A wrong EncodingAESKey decrypts to noise, which almost never ends in valid padding.
            raise WecomCryptoError(
                "the WeCom callback cannot be decrypted: bad padding "
                "(is BAOKE_WECOM_AES_KEY the EncodingAESKey of this callback URL?)"
            )
        plain = plain[:-pad]
        if len(plain) < _RANDOM + 4:
            raise WecomCryptoError("the decrypted WeCom callback is too short")
        (length,) = struct.unpack(">I", plain[_RANDOM : _RANDOM + 4])
        start = _RANDOM + 4
        if start + length > len(plain):
            raise WecomCryptoError("the decrypted WeCom callback has a wrong message length")
        message, receive_id = plain[start : start + length], plain[start + length :]
        if not hmac.compare_digest(receive_id, self.receive_id.encode("utf-8")):
            raise WecomCryptoError(
                "the WeCom callback is addressed to another corp or app (its ReceiveId is not "
                "the configured corp_id)"
            )
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WecomCryptoError("the decrypted WeCom callback is not UTF-8 text") from exc

    def _check_signature(self, msg_signature: str, timestamp: str, nonce: str, data: str) -> None:
        expected = signature(self.token, timestamp, nonce, data)
        # Constant-time: the signature is the only thing standing between a forger and us.
        given = (msg_signature or "").strip().lower().encode("utf-8")
        if not hmac.compare_digest(expected.encode("ascii"), given):
            raise WecomCryptoError(
                "the WeCom callback signature does not match (is BAOKE_WECOM_TOKEN the Token of "
                "this callback URL?)"
            )


WXBizMsgCrypt = WecomCrypto
"""Tencent's name for the same class, for readers coming from the official samples."""
