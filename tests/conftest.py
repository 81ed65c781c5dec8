"""Fixtures shared by the whole suite: real PostgreSQL and Mosquitto, and the async police."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from store.migrate import migrate
from tests.support import pg
from vigil_testkit import procs
from vigil_testkit.mosquitto import MosquittoProcess, mosquitto_binary, plain_spec

pytest_plugins = ["tests.support.fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM/SIGHUP of pytest kill every process a test started, then stop the run as Ctrl-C does.
    procs.install_signal_handlers()


# Our own code must never block the event loop; third-party libraries are theirs to police.
_POLICED = ["rpm_core", "edge_agent", "broker_config", "store", "ingest", "alerts", "consult", "clinician_api"]


@pytest.fixture(autouse=True)
def _blockbuster(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("asyncio") is None:
        yield
        return
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx(_POLICED):
        yield


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database of this test run, migrated once by the real migration runner."""
    name = pg.create_database()
    url = pg.url_for(name)
    try:
        migrate(url, flavor="postgres")
        yield url
    finally:
        pg.drop_database(name)


@pytest.fixture
def db(database_url: str) -> str:
    """The run's database, emptied before this test. Yields its URL."""
    pg.truncate_all(database_url)
    return database_url


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A plain anonymous Mosquitto on a free port, rendered by broker_config."""
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed: run .ci/run or apt-get install mosquitto")
    broker = MosquittoProcess(plain_spec(tmp_path / "mosquitto"), tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
