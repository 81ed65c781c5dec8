"""Helpers for the secure-messaging tests: files to attach and threads opened over the API."""

from __future__ import annotations

import os
import struct
import zlib

import httpx

__all__ = ["jpeg_bytes", "open_thread", "png_bytes"]


def png_bytes(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A real (decodable) PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def jpeg_bytes(size: int = 2000) -> bytes:
    """Bytes that start like a JPEG (what the type check reads) with random content."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(max(0, size - 13)) + b"\xff\xd9"


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
