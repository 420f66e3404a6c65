"""End-to-end tests talk to the fake Qualtrics as a separate process on a real port."""

import pytest

from service.config import Settings
from tests.conftest import make_settings


@pytest.fixture
def settings(database_url: str, fake_qualtrics_url: str) -> Settings:
    """The app points at the fake over HTTP, exactly as it would at Qualtrics."""
    return make_settings(database_url, qualtrics_base_url=fake_qualtrics_url + "/{subdomain}")
