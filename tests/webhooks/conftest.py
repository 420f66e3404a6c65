"""Fixtures for the webhook intake tests."""

import pytest
from fastapi import FastAPI

from tests.webhooks.helpers import RecordingDispatcher


@pytest.fixture
def dispatcher(app: FastAPI) -> RecordingDispatcher:
    """Replaces the app's dispatcher with a recorder."""
    recorder = RecordingDispatcher()
    app.state.dispatcher = recorder
    return recorder
