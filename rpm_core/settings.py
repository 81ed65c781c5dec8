"""Settings plumbing shared by every process: environment ``VIGIL_*`` over a TOML file.

Each package declares its own settings class (deriving :class:`VigilSettings`); the process's
entry point builds it once with :func:`load_settings` and passes it down. Precedence, highest
first: explicit overrides (command-line flags), ``VIGIL_<NAME>`` environment variables, the TOML
file (top-level keys named like the fields), the defaults.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rpm_core.errors import ConfigError

__all__ = ["CONFIG_ENV", "VigilSettings", "load_settings"]

CONFIG_ENV: Final = "VIGIL_CONFIG"
_toml_path: ContextVar[Path | None] = ContextVar("_toml_path", default=None)

S = TypeVar("S", bound="VigilSettings")


class VigilSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _toml_path.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(cls: type[S], *, config_file: Path | None = None, **overrides: Any) -> S:
    """Build ``cls`` from overrides, the environment and the TOML file (``VIGIL_CONFIG``).

    Overrides whose value is None are ignored, so optional command-line flags can be passed as is.
    Raises :class:`ConfigError` naming the offending fields (never their values).
    """
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = Path(os.environ[CONFIG_ENV])
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"configuration file {config_file} does not exist")
    token = _toml_path.set(config_file)
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) + f" ({e['type']})" for e in exc.errors())
        raise ConfigError(f"invalid settings: {fields}") from exc
    except ValueError as exc:  # e.g. a TOML syntax error
        raise ConfigError(f"cannot read settings: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses per nesting level: `x = [[[[...]]]]` (catalogue 24)
        raise ConfigError("cannot read settings: nested too deeply") from exc
    finally:
        _toml_path.reset(token)
