"""Fixtures of the service tests: a seeded data directory, copied per test or per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serve.helpers import copy_data_dir, seed_data_dir, shop_attributes_document


@pytest.fixture(scope="session")
def shop_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded once per session (embeds the examples and node texts); tests use copies."""
    path = tmp_path_factory.mktemp("shop-template") / "data"
    seed_data_dir(path)
    return path


@pytest.fixture(scope="session")
def attrs_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop with attributes (Color, Material, Brand, Size), seeded once per session."""
    path = tmp_path_factory.mktemp("attrs-template") / "data"
    seed_data_dir(path, document=shop_attributes_document())
    return path


@pytest.fixture
def attrs_dir(attrs_template: Path, tmp_path: Path) -> Path:
    return copy_data_dir(attrs_template, tmp_path / "data")


@pytest.fixture
def shop_dir(shop_template: Path, tmp_path: Path) -> Path:
    return copy_data_dir(shop_template, tmp_path / "data")
