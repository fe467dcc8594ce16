"""Fixtures of the core tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """A fresh, offline ``ZOO_CACHE`` (the folder): downloads are refused, what a test places there is found."""
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "cache"
