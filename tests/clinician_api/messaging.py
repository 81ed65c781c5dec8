"""Helpers for the secure-messaging tests: files to attach and threads opened over the API."""

from __future__ import annotations

import os
import struct
import zlib

import httpx

__all__ = ["jpeg_bytes", "open_thread", "png_bytes"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(
    width: int = 8,
    height: int = 8,
    rgb: tuple[int, int, int] = (200, 40, 40),
    *,
    noise: bool = False,
    text: bytes = b"",
) -> bytes:
    """A real (decodable) PNG of one colour (or random pixels), with a tEXt chunk when ``text``."""
    rows = (os.urandom(3 * width) if noise else bytes(rgb) * width for _ in range(height))
    raw = b"".join(b"\x00" + r for r in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    meta = _chunk(b"tEXt", b"Comment\x00" + text) if text else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + meta
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def _segment(marker: int, data: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data


def jpeg_bytes(size: int = 2000, *, exif: bytes = b"") -> bytes:
    """A JPEG's structure (SOI, JFIF APP0, optional Exif APP1, a quantisation table, start of scan)
    around random scan data: what the type check and the metadata stripping read."""
    head = b"\xff\xd8" + _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    if exif:
        head += _segment(0xE1, b"Exif\x00\x00" + exif)
    head += _segment(0xDB, b"\x00" + bytes(range(64)))
    head += _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return head + os.urandom(max(0, size - len(head) - 2)) + b"\xff\xd9"


async def open_thread(
    client: httpx.AsyncClient,
    patient_id: str,
    *,
    subject: str = "Ankle swelling",
    body: str | None = "How is the swelling today?",
    kind: str = "patient",
    alert_id: int | None = None,
) -> dict:
    payload: dict = {"kind": kind, "subject": subject, "body": body}
    if alert_id is not None:
        payload["alert_id"] = alert_id
    r = await client.post(f"/api/v1/patients/{patient_id}/threads", json=payload)
    assert r.status_code == 201, r.text
    return r.json()
