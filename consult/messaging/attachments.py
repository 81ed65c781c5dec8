"""What may be attached to a message, and sealing it at rest.

A file is accepted only when its *content* is one of the allowed types (JPEG, PNG, PDF: a photo of
a swollen ankle, a scanned letter), the type the client declared is that same type, and it is no
larger than the limit. Images are walked segment by segment (chunk by chunk) and stored without
their metadata: a phone photo's Exif block holds where it was taken (the patient's home); a
structure that does not parse is refused, and whatever follows the image's end (a polyglot's
payload) is dropped. The client's file name is never kept (it may name the patient); an attachment
is served as ``attachment-<id>.<ext>``.

Sealing: AES-256-GCM with a key derived (HKDF-SHA256) from the API's secret key for this purpose
only; a fresh 96-bit nonce per file; the attachment id, thread id and media type are the associated
data, so a sealed blob moved to another row, thread or type does not open. ``key_id`` is a
fingerprint of the key (never the key): a blob sealed under another secret is reported as
``key_changed``, a damaged one as ``tampered``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from consult.messaging.errors import AttachmentRefused, AttachmentUnreadable

__all__ = [
    "ALLOWED_TYPES",
    "EXTENSIONS",
    "HARD_MAX_BYTES",
    "AttachmentCipher",
    "check_upload",
    "sniff",
    "strip_metadata",
]

ALLOWED_TYPES: Final = ("image/jpeg", "image/png", "application/pdf")
EXTENSIONS: Final = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}
# The database refuses anything larger whatever the settings say (migration 0042).
HARD_MAX_BYTES: Final = 10 * 1024 * 1024
_NONCE: Final = 12
_TAG: Final = 16


def sniff(data: bytes) -> str | None:
    """The media type the content itself says, among the allowed ones; None for anything else."""
    if data.startswith(b"\xff\xd8\xff") and len(data) >= 4:
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def check_upload(declared: str | None, data: bytes, *, max_bytes: int) -> str:
    """The media type of an acceptable upload; raises :class:`AttachmentRefused` otherwise."""
    if not data:
        raise AttachmentRefused("the file is empty", code="empty")
    if len(data) > min(max_bytes, HARD_MAX_BYTES):
        raise AttachmentRefused(f"the file is larger than {min(max_bytes, HARD_MAX_BYTES)} bytes", code="too_large")
    kind = (declared or "").split(";", 1)[0].strip().lower()
    if kind not in ALLOWED_TYPES:
        raise AttachmentRefused("only JPEG, PNG and PDF files may be attached", code="type_not_allowed")
    found = sniff(data)
    if found is None:
        raise AttachmentRefused("the content is not a JPEG, PNG or PDF file", code="type_not_allowed")
    if found != kind:
        raise AttachmentRefused("the content does not match the declared type", code="type_mismatch")
    return found


# JPEG segments that carry metadata, not pixels: APP1 (Exif with the phone's GPS position, XMP),
# APP12-APP13 (Photoshop/IPTC captions), COM (comments). APP0 (JFIF), APP2 (ICC colour profile) and
# APP14 (Adobe colour transform) change how the picture looks and stay.
_JPEG_DROP: Final = frozenset({0xE1, 0xEC, 0xED, 0xFE})
# PNG chunks of text and metadata (tEXt, zTXt, iTXt, eXIf, tIME).
_PNG_DROP: Final = frozenset({b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"})
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


def _malformed() -> AttachmentRefused:
    return AttachmentRefused("the file's structure is damaged", code="malformed")


def _strip_jpeg(data: bytes) -> bytes:
    out = bytearray(data[:2])  # SOI
    i = 2
    while True:
        if i + 4 > len(data) or data[i] != 0xFF:
            raise _malformed()
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2 or i + 2 + length > len(data):
            raise _malformed()
        end = i + 2 + length
        if marker == 0xDA:  # start of scan: the picture itself follows, kept as sent
            out += data[i:]
            return bytes(out)
        if marker not in _JPEG_DROP:
            out += data[i:end]
        i = end


def _strip_png(data: bytes) -> bytes:
    out = bytearray(_PNG_SIGNATURE)
    i = len(_PNG_SIGNATURE)
    while i < len(data):
        if i + 12 > len(data):
            raise _malformed()
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if end > len(data):
            raise _malformed()
        if kind not in _PNG_DROP:
            out += data[i:end]
        i = end
        if kind == b"IEND":
            return bytes(out)
    raise _malformed()


def strip_metadata(media_type: str, data: bytes) -> bytes:
    """The picture without its metadata (a phone photo's GPS position, captions, comments); raises
    :class:`AttachmentRefused` ('malformed') for an image whose structure does not parse. PDFs are
    kept as sent."""
    if media_type == "image/jpeg":
        return _strip_jpeg(data)
    if media_type == "image/png":
        return _strip_png(data)
    return data


def _aad(attachment_id: str, thread_id: str, media_type: str) -> bytes:
    return f"vigil-attachment v1|{attachment_id}|{thread_id}|{media_type}".encode()


@dataclass(frozen=True, slots=True)
class AttachmentCipher:
    key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> AttachmentCipher:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"vigil-api message-attachments v1")
        return cls(hkdf.derive(secret.encode("utf-8")))

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"vigil key id|" + self.key).hexdigest()[:16]

    def seal(self, plaintext: bytes, *, attachment_id: str, thread_id: str, media_type: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self.key).encrypt(nonce, plaintext, _aad(attachment_id, thread_id, media_type))

    def open(self, sealed: bytes, *, key_id: str, attachment_id: str, thread_id: str, media_type: str) -> bytes:
        if key_id != self.key_id:
            raise AttachmentUnreadable("the attachment was sealed with another key", code="key_changed")
        if len(sealed) < _NONCE + _TAG:
            raise AttachmentUnreadable("the attachment is damaged", code="tampered")
        try:
            return AESGCM(self.key).decrypt(
                sealed[:_NONCE], sealed[_NONCE:], _aad(attachment_id, thread_id, media_type)
            )
        except InvalidTag as exc:
            raise AttachmentUnreadable("the attachment is damaged", code="tampered") from exc
