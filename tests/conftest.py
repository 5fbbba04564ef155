"""Shared test fixtures.

Kept small on purpose. Command-line options (e.g. a future `--radio URI` for hardware tests) go in
a `pytest_addoption` hook here, next to the fixtures that read them.
"""

from __future__ import annotations

import pytest

from airfl.radio import forget_airs


@pytest.fixture(autouse=True)
def _isolated_airs():
    """Every test starts and ends with no named loopback airs, so open_radio() state never leaks."""
    forget_airs()
    yield
    forget_airs()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--radio",
        action="store",
        default=None,
        metavar="URI",
        help="radio for tests marked `hardware`, e.g. pluto://ip:192.168.2.1 or soapy://driver=uhd",
    )


@pytest.fixture
def radio_uri(request: pytest.FixtureRequest) -> str:
    """The --radio URI; tests that use it are skipped when it is not given."""
    uri = request.config.getoption("--radio")
    if not uri:
        pytest.skip("needs a real radio: pass --radio URI (e.g. --radio pluto://ip:192.168.2.1)")
    return str(uri)
