"""``vigil edge``: commands of the edge agent.

``decode`` lives here; ``enroll``, ``install``/``uninstall``, ``pair``, ``run`` and ``status`` are
in :mod:`edge_agent.commands` and mounted on the same app.

``vigil edge decode CHARACTERISTIC HEX`` decodes one characteristic value with the same pure
decoders the agent uses and prints exactly one JSON object on stdout::

    {"readings": [{"metric": "heart_rate", "value": 85.0, "unit": "/min",
                   "device_time": null, "flags": ["sensor_contact:detected"], ...}]}

``device_time`` is ISO 8601 exactly as the device reported it (no offset, no zone) or null;
when the device sent year, month or day as "unknown", it is null and ``device_time_fields``
holds the fields it did send (unknown ones null). An undecodable payload, bad hex or an
unknown characteristic prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Final

import typer

from edge_agent import commands
from edge_agent.devices import DecodedReading, DecodeError, decode
from edge_agent.devices.datetime_field import DateTime

__all__ = ["app", "parse_characteristic", "parse_hex", "reading_to_json"]

EXIT_UNDECODABLE: Final = 2

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

_UUID16: Final = re.compile(r"(?:0x)?([0-9a-f]{1,4})", re.IGNORECASE)


class BadArgument(Exception):
    """A command-line argument (``.argument``) that is not what the command needs."""

    def __init__(self, argument: str, expected: str) -> None:
        super().__init__(f"{argument} must be {expected}")
        self.argument = argument


@app.callback()
def _edge() -> None:
    """The edge agent that runs on the patient's Raspberry Pi."""


def parse_characteristic(text: str) -> int:
    """``2A35``, ``0x2a35`` -> 0x2A35."""
    match = _UUID16.fullmatch(text.strip())
    if match is None:
        raise BadArgument("CHARACTERISTIC", "a 16-bit UUID in hex, e.g. 2A35 or 0x2A35")
    return int(match.group(1), 16)


def parse_hex(text: str) -> bytes:
    """Hex bytes, with or without whitespace: ``"1E 55 32"`` or ``"1E5532"``."""
    try:
        return bytes.fromhex("".join(text.split()))
    except ValueError:
        raise BadArgument("HEX", "hexadecimal bytes, e.g. '1E 55 32 00 21 00'") from None


def _fields_json(fields: DateTime | None) -> dict[str, int | None] | None:
    if fields is None:
        return None
    return {
        "year": fields.year,
        "month": fields.month,
        "day": fields.day,
        "hours": fields.hours,
        "minutes": fields.minutes,
        "seconds": fields.seconds,
    }


def reading_to_json(reading: DecodedReading) -> dict[str, Any]:
    """One reading as a JSON-ready dict (the shape ``vigil edge decode`` prints)."""
    return {
        "metric": reading.metric,
        "value": reading.value,
        "unit": reading.unit,
        "absent_reason": reading.absent_reason,
        "device_time": None if reading.device_time is None else reading.device_time.isoformat(),
        "device_time_fields": _fields_json(reading.device_time_fields),
        "time_offset_minutes": reading.time_offset_minutes,
        "sequence": reading.sequence,
        "user_id": reading.user_id,
        "flags": sorted(reading.flags),
    }


@app.command("decode")
def decode_command(
    characteristic: Annotated[
        str, typer.Argument(metavar="CHARACTERISTIC", help="16-bit characteristic UUID, e.g. 2A35 or 0x2A35.")
    ],
    payload: Annotated[str, typer.Argument(metavar="HEX", help="The value in hex; spaces allowed.")],
) -> None:
    """Decode one GATT characteristic value and print its readings as JSON."""
    try:
        readings = decode(parse_characteristic(characteristic), parse_hex(payload))
    except BadArgument as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNDECODABLE) from exc
    except DecodeError as exc:
        # The message names the characteristic, field and offsets, never the payload (PHI).
        typer.echo(f"error: {exc.reason}: {exc}", err=True)
        raise typer.Exit(EXIT_UNDECODABLE) from exc
    typer.echo(json.dumps({"readings": [reading_to_json(r) for r in readings]}))


commands.register(app)
