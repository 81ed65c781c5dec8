"""The agent's TOML configuration file: written by ``enroll``, extended by ``pair``, read as settings.

Python reads TOML (``tomllib``) but does not write it; the agent's file only holds scalars and the
``[[devices]]`` allow-list, so :func:`render_config` writes exactly that subset. Files are replaced
atomically (write, fsync, rename) and keep mode 0640.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from edge_agent.errors import EnrollmentError
from edge_agent.settings import PairedDevice

__all__ = ["add_device", "read_config", "render_config", "write_config"]

_HEADER: Final = (
    "# Vigil edge agent configuration (docs/edge-agent.md). Written by `vigil edge enroll`;\n"
    "# `vigil edge pair` adds devices. Environment variables VIGIL_<NAME> override these keys.\n"
)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string
    raise TypeError(f"cannot write {type(value).__name__} to the agent config")


def render_config(values: Mapping[str, Any], devices: Sequence[PairedDevice]) -> str:
    lines = [_HEADER]
    for key, value in values.items():
        if key != "devices" and value is not None:
            lines.append(f"{key} = {_value(value)}")
    for device in devices:
        lines += ["", "[[devices]]"]
        lines += [f"{k} = {_value(v)}" for k, v in device.to_doc().items()]
    return "\n".join(lines) + "\n"


def read_config(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise EnrollmentError(f"cannot read the agent config ({exc})", path=path) from exc
    except UnicodeDecodeError as exc:  # found by bench.fuzz: a file that is not UTF-8
        raise EnrollmentError("cannot read the agent config (not UTF-8)", path=path) from exc
    except RecursionError as exc:  # tomllib recurses per nesting level (catalogue 24)
        raise EnrollmentError("cannot read the agent config (nested too deeply)", path=path) from exc


def write_config(path: Path, values: Mapping[str, Any], devices: Sequence[PairedDevice]) -> None:
    text = render_config(values, devices)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.fchmod(fd, 0o640)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.exists():
        st = path.stat()
        os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)


def add_device(path: Path, device: PairedDevice) -> bool:
    """Add ``device`` to the allow-list in ``path``; False if its address is already there."""
    config = read_config(path)
    devices = [PairedDevice.from_doc(d, at=f"devices.{i}.") for i, d in enumerate(config.get("devices", []))]
    if any(d.address == device.address for d in devices):
        return False
    write_config(path, config, [*devices, device])
    return True
