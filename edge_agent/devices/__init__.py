"""Pure decoders and encoders of the Bluetooth SIG health profiles (no I/O, no bleak)."""

from __future__ import annotations

__all__: list[str] = []
