from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from serve.settings import Settings, default_data_dir, load_settings


def test_env_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TAGSMITH_LLM__BACKEND", "openai")
    monkeypatch.setenv("TAGSMITH_LLM__BASE_URL", "http://127.0.0.1:8001/v1")
    monkeypatch.setenv("TAGSMITH_LLM__MODEL", "tagsmith")
    monkeypatch.setenv("TAGSMITH_LLM__API_KEY", "sekret")
    s = load_settings()
    assert s.data_dir == tmp_path
    assert (s.llm.backend, s.llm.base_url, s.llm.model) == ("openai", "http://127.0.0.1:8001/v1", "tagsmith")
    assert s.llm.api_key.get_secret_value() == "sekret" and "sekret" not in repr(s)
    assert s.taxonomy_db_url == f"sqlite:///{tmp_path / 'taxonomy.db'}"


def test_toml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "tagsmith.toml"
    config.write_text('log_level = "debug"\n[llm]\nbackend = "openai"\nbase_url = "http://x/v1"\n[server]\nport = 9001\n')
    monkeypatch.setenv("TAGSMITH_CONFIG", str(config))
    monkeypatch.setenv("TAGSMITH_SERVER__PORT", "9002")
    s = load_settings()
    assert (s.log_level, s.llm.backend, s.server.port) == ("debug", "openai", 9002)


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAGSMITH_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(FileNotFoundError):
        load_settings()


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGSMITH_LLM__BACKEND", "gpt5")
    with pytest.raises(ValidationError):
        Settings()


def test_default_data_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "tagsmith"


def test_attribute_selection_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert (Settings().tagging.attributes, Settings().tagging.attribute_review_threshold) == ("on", 0.5)
    monkeypatch.setenv("TAGSMITH_TAGGING__ATTRIBUTES", "off")
    assert load_settings().tagging.attributes == "off"
    monkeypatch.setenv("TAGSMITH_TAGGING__ATTRIBUTES", '["Color", "Size"]')
    assert load_settings().tagging.attributes == ["Color", "Size"]
    config = tmp_path / "tagsmith.toml"
    config.write_text('[tagging]\nattributes = ["Fabric"]\nattribute_review_threshold = 0.7\n')
    monkeypatch.delenv("TAGSMITH_TAGGING__ATTRIBUTES")
    monkeypatch.setenv("TAGSMITH_CONFIG", str(config))
    s = load_settings()
    assert (s.tagging.attributes, s.tagging.attribute_review_threshold) == (["Fabric"], 0.7)
    for bad in ("all", "[]", '[" "]'):
        monkeypatch.setenv("TAGSMITH_TAGGING__ATTRIBUTES", bad)
        with pytest.raises(ValidationError):
            load_settings()


def test_embedder_threads_reach_the_embedder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``TAGSMITH_EMBEDDER__NUM_THREADS`` (replicas sharing a host) is given to the embedder;
    0 is refused, unset leaves torch's default."""
    import serve.runtime as runtime_module

    seen: list[object] = []
    monkeypatch.setattr(runtime_module, "SentenceTransformerEmbedder", lambda *a, **kw: seen.append(kw.get("num_threads")))
    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path))
    runtime_module.inner_embedder_from_settings(load_settings())
    monkeypatch.setenv("TAGSMITH_EMBEDDER__NUM_THREADS", "1")
    runtime_module.inner_embedder_from_settings(load_settings())
    assert seen == [None, 1]
    monkeypatch.setenv("TAGSMITH_EMBEDDER__NUM_THREADS", "0")
    with pytest.raises(ValidationError):
        load_settings()
