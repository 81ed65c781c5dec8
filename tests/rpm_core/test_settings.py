from __future__ import annotations

from pathlib import Path

import pytest

from rpm_core.errors import ConfigError
from rpm_core.settings import VigilSettings, load_settings


class Demo(VigilSettings):
    database_url: str = "postgresql://default"
    workers: int = 1


def test_precedence_override_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "vigil.toml"
    conf.write_text('database_url = "postgresql://file"\nworkers = 3\n')
    assert load_settings(Demo).database_url == "postgresql://default"
    assert load_settings(Demo, config_file=conf).workers == 3
    monkeypatch.setenv("VIGIL_WORKERS", "5")
    s = load_settings(Demo, config_file=conf)
    assert (s.database_url, s.workers) == ("postgresql://file", 5)
    assert load_settings(Demo, config_file=conf, workers=7, database_url=None).workers == 7


def test_bad_values_name_the_field_not_the_value(tmp_path: Path) -> None:
    conf = tmp_path / "vigil.toml"
    conf.write_text('workers = "many-secret-thing"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(Demo, config_file=conf)
    assert "workers" in str(err.value)
    assert "many-secret-thing" not in str(err.value)


def test_missing_or_broken_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(Demo, config_file=tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("workers = [\n")
    with pytest.raises(ConfigError):
        load_settings(Demo, config_file=broken)
