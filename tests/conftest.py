"""Fixtures every test module may use."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data folder holding the offline default (digits-dvs, default settings), simulated once per session."""
    from data import build_datasets

    folder = tmp_path_factory.mktemp("digits-dvs-data")
    build_datasets("digits-dvs", data_dir=str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def data_dir(digits_dir: str) -> Path:
    """``digits_dir`` as a Path, for the training tests."""
    return Path(digits_dir)
