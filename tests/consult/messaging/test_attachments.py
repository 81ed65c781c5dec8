"""What may be attached (the content decides, the declared type must agree, the size is bounded)
and the seal: bound to the attachment, its thread and its type, and to the key that made it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consult.messaging.attachments import HARD_MAX_BYTES, AttachmentCipher, check_upload, sniff, strip_metadata
from consult.messaging.errors import AttachmentRefused, AttachmentUnreadable
from tests.clinician_api.messaging import jpeg_bytes, png_bytes

CIPHER = AttachmentCipher.from_secret("attachment-test-secret-" + "y" * 32)
IDS = {"attachment_id": "a1", "thread_id": "t1", "media_type": "image/png"}


def test_the_content_decides_the_type() -> None:
    assert sniff(png_bytes()) == "image/png"
    assert sniff(jpeg_bytes()) == "image/jpeg"
    assert sniff(b"%PDF-1.7\n...") == "application/pdf"
    for other in (b"GIF89a....", b"<svg/>", b"<!doctype html>", b"\xff\xd8", b"RIFF....WEBP", b""):
        assert sniff(other) is None


@pytest.mark.parametrize(
    ("declared", "data", "code"),
    [
        ("image/png", b"", "empty"),
        ("image/png", png_bytes() + b"\x00" * 2000, "too_large"),
        ("image/gif", b"GIF89a", "type_not_allowed"),
        (None, png_bytes(), "type_not_allowed"),
        ("image/jpeg", png_bytes(), "type_mismatch"),
        ("application/pdf", b"<html>%PDF-</html>", "type_not_allowed"),
    ],
)
def test_refusals(declared, data, code) -> None:
    with pytest.raises(AttachmentRefused) as refused:
        check_upload(declared, data, max_bytes=1024)
    assert refused.value.code == code


def test_the_hard_limit_holds_whatever_the_setting() -> None:
    with pytest.raises(AttachmentRefused, match="larger"):
        check_upload("image/jpeg", jpeg_bytes(HARD_MAX_BYTES + 1), max_bytes=HARD_MAX_BYTES * 4)
    assert check_upload("image/png; charset=binary", png_bytes(), max_bytes=1024) == "image/png"


@given(st.binary(min_size=1, max_size=2048))
def test_a_seal_opens_only_as_what_it_was_sealed_as(data: bytes) -> None:
    sealed = CIPHER.seal(data, **IDS)
    assert data not in sealed or len(data) < 4
    assert CIPHER.open(sealed, key_id=CIPHER.key_id, **IDS) == data
    for field, other in (("attachment_id", "a2"), ("thread_id", "t2"), ("media_type", "image/jpeg")):
        with pytest.raises(AttachmentUnreadable) as bad:
            CIPHER.open(sealed, key_id=CIPHER.key_id, **{**IDS, field: other})
        assert bad.value.code == "tampered"
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(AttachmentUnreadable):
        CIPHER.open(flipped, key_id=CIPHER.key_id, **IDS)


def test_another_key_is_told_apart_from_tampering() -> None:
    other = AttachmentCipher.from_secret("another-secret-" + "z" * 32)
    sealed = other.seal(b"photo", **IDS)
    assert other.key_id != CIPHER.key_id
    with pytest.raises(AttachmentUnreadable) as bad:
        CIPHER.open(sealed, key_id=other.key_id, **IDS)
    assert bad.value.code == "key_changed"
    assert CIPHER.key_id not in repr(CIPHER.key)  # a fingerprint, not the key


def test_photo_metadata_is_stripped_and_the_picture_kept() -> None:
    gps = b"GPSLatitude 51.5072 N GPSLongitude 0.1276 W"
    photo = jpeg_bytes(3000, exif=gps)
    clean = strip_metadata("image/jpeg", photo)
    assert gps not in clean
    assert b"Exif" not in clean
    assert clean.startswith(b"\xff\xd8\xff\xe0")  # JFIF kept
    assert photo.endswith(clean[-2000:])  # the scan data, as sent
    png = png_bytes(text=b"taken at 12 Acacia Avenue")
    assert b"Acacia" not in strip_metadata("image/png", png)
    assert strip_metadata("image/png", png) == png_bytes()
    assert strip_metadata("application/pdf", b"%PDF-1.7 x") == b"%PDF-1.7 x"


@pytest.mark.parametrize(
    ("media_type", "data"),
    [
        ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 3),  # a segment longer than the file
        ("image/jpeg", b"\xff\xd8\xff"),
        ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x04ab<html>"),  # no marker where one must be
        ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"),  # cut short
        ("image/png", png_bytes()[:-12]),  # no IEND
    ],
)
def test_an_image_whose_structure_does_not_parse_is_refused(media_type: str, data: bytes) -> None:
    with pytest.raises(AttachmentRefused) as refused:
        strip_metadata(media_type, data)
    assert refused.value.code == "malformed"


def test_what_follows_the_end_of_a_png_is_dropped() -> None:
    polyglot = png_bytes() + b"<html><script>alert(1)</script>" + b"PK\x03\x04zip"
    assert strip_metadata("image/png", polyglot) == png_bytes()
