"""Shared fixtures: the fixture datasets of ``scenario_data``; torch on one thread for the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from scenario_data import write_all


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every fixture dataset in its real format (see ``scenario_data.write_all``)."""
    return write_all(tmp_path_factory.mktemp("scenario_data"))


@pytest.fixture(autouse=True, scope="session")
def single_thread() -> Iterator[None]:
    """Run torch on one thread, as the CLI does by default: the small nets here gain nothing from two, and
    on a busy 2-core machine two threads made the Split-Fashion CLI test 20x slower (OpenMP threads
    waiting on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def private_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A config folder of the test session's own (``XDG_CONFIG_HOME``), so the checkpoint signing key
    tests make never touches the user's ``~/.config``; subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("config")
    before = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = before
