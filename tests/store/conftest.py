import pytest


@pytest.fixture
def url(db_url: str) -> str:
    """A fresh, migrated store on each backend (tests/conftest.py: db_url)."""
    return db_url
