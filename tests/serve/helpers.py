"""A small shop taxonomy with tagged examples, a data directory seeded with them, API keys,
and ways to run the app: in-process (TestClient) or as a real server process on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from agent.llm import LLMBackend
from retrieval import CandidateGenerator, Example, LexicalClassifier, build_index
from retrieval.publish import publish_index
from serve.app import create_app
from serve.keys import SCOPES, KeyStore, key_store_path
from serve.runtime import embedder_from_settings, open_index_store
from serve.settings import Settings
from taxonomy import Attribute, Node, TaxonomyDocument, TaxonomyStore

REPO = Path(__file__).resolve().parents[2]
TAGSMITH = str(Path(sys.executable).parent / "tagsmith")


def shop_document() -> TaxonomyDocument:
    """Four verticals, 13 active leaves; ids contain '/' (as Shopify's gid:// ids do)."""
    n = Node.model_validate
    rows: list[dict[str, Any]] = [
        {"id": "apparel", "name": "Apparel"},
        {"id": "apparel/tops", "name": "Tops", "parent": "apparel"},
        {"id": "apparel/tops/tees", "name": "T-Shirts", "parent": "apparel/tops", "synonyms": ["tee", "tshirt"]},
        {"id": "apparel/tops/hoodies", "name": "Hoodies", "parent": "apparel/tops"},
        {"id": "apparel/socks", "name": "Socks", "parent": "apparel"},
        {"id": "apparel/shoes", "name": "Shoes", "parent": "apparel"},
        {"id": "kitchen", "name": "Kitchen"},
        {"id": "kitchen/cookware", "name": "Cookware", "parent": "kitchen"},
        {"id": "kitchen/cookware/pans", "name": "Frying Pans", "parent": "kitchen/cookware", "synonyms": ["skillet"]},
        {"id": "kitchen/cookware/pots", "name": "Stock Pots", "parent": "kitchen/cookware"},
        {"id": "kitchen/coffee", "name": "Coffee Makers", "parent": "kitchen"},
        {"id": "kitchen/knives", "name": "Kitchen Knives", "parent": "kitchen"},
        {"id": "electronics", "name": "Electronics"},
        {"id": "electronics/phones", "name": "Mobile Phones", "parent": "electronics"},
        {"id": "electronics/headphones", "name": "Headphones", "parent": "electronics"},
        {"id": "electronics/chargers", "name": "Chargers & Cables", "parent": "electronics"},
        {"id": "electronics/pagers", "name": "Pagers", "parent": "electronics", "deprecated": True,
         "replaced_by": "electronics/phones"},
        {"id": "toys", "name": "Toys"},
        {"id": "toys/puzzles", "name": "Puzzles", "parent": "toys"},
        {"id": "toys/blocks", "name": "Building Blocks", "parent": "toys"},
    ]
    return TaxonomyDocument(name="tiny shop", source_version="t1", nodes=tuple(n(r) for r in rows))


def _closed(attr_id: str, name: str, values: list[str], **extra: Any) -> Attribute:
    return Attribute.model_validate({
        "id": attr_id, "name": name, **extra,
        "values": [{"id": f"{attr_id}/{v.lower().replace(' ', '-')}", "name": v} for v in values],
    })


def shop_attributes_document() -> TaxonomyDocument:
    """The shop taxonomy with attributes (as the default taxonomy has): Color and Material
    (closed; Material multi-valued) on Apparel, Material also on Cookware, Brand (open) on
    every vertical, Size (open) on Shoes."""
    doc = shop_document()
    attrs = (
        _closed("color", "Color", ["Black", "White", "Grey", "Navy", "Red", "Blue"]),
        _closed("material", "Material", ["Cotton", "Wool", "Leather", "Fleece", "Cast iron", "Stainless steel"],
                cardinality="multi"),
        Attribute(id="brand", name="Brand", open_values=True, value_type="name"),
        Attribute(id="size", name="Size", open_values=True, value_type="text"),
    )
    attached = {
        "apparel": ("color", "material", "brand"), "kitchen": ("brand",), "electronics": ("brand",),
        "toys": ("brand",), "kitchen/cookware": ("material",), "apparel/shoes": ("size",),
    }
    nodes = tuple(n.model_copy(update={"attributes": attached.get(n.id, ())}) for n in doc.nodes)
    return doc.model_copy(update={"nodes": nodes, "attributes": attrs, "name": "tiny shop with attributes"})


_EXAMPLES = {
    "apparel/tops/tees": ["Cotton crew neck t-shirt white", "Graphic print tee for men", "V-neck t-shirt slim fit black"],
    "apparel/tops/hoodies": ["Fleece pullover hoodie grey", "Zip-up hooded sweatshirt navy", "Oversized hoodie with kangaroo pocket"],
    "apparel/socks": ["Wool hiking socks 3 pairs", "Cotton ankle socks pack of 6", "Compression running socks"],
    "apparel/shoes": ["Leather running shoes size 42", "Canvas sneakers low top white", "Trail running shoes waterproof"],
    "kitchen/cookware/pans": ["Non-stick frying pan 28 cm", "Cast iron skillet 10 inch", "Stainless steel saute pan with lid"],
    "kitchen/cookware/pots": ["Stainless steel stock pot 8 L", "Enamel soup pot with lid 5 l", "Large pasta pot 12 quart"],
    "kitchen/coffee": ["Drip coffee machine 12 cup", "French press coffee maker 1 l", "Espresso machine with milk frother"],
    "kitchen/knives": ["Chef knife 20 cm german steel", "Santoku knife with hollow edge", "Paring knife set of 3"],
    "electronics/phones": ["Apple iPhone 12 128GB red", "Samsung Galaxy S21 smartphone 5G", "Google Pixel 7 unlocked phone"],
    "electronics/headphones": ["Wireless noise cancelling headphones", "In-ear bluetooth earbuds with case", "Over-ear studio headphones wired"],
    "electronics/chargers": ["USB-C fast charger 65W", "Lightning to USB cable 2 m", "Wireless charging pad 15W"],
    "toys/puzzles": ["1000 piece jigsaw puzzle landscape", "Wooden puzzle for toddlers animals", "3D puzzle castle 216 pieces"],
    "toys/blocks": ["Building blocks set 500 pieces", "Magnetic building tiles 60 pcs", "Wooden stacking blocks for kids"],
}


def shop_examples() -> list[Example]:
    return [
        Example(id=f"ex-{leaf.replace('/', '-')}-{i}", title=title, tags=(leaf,))
        for leaf, titles in _EXAMPLES.items()
        for i, title in enumerate(titles)
    ]


#: the environment of a test server over a data dir seeded by :func:`seed_data_dir`
HASHING_ENV = {"TAGSMITH_EMBEDDER__BACKEND": "hashing"}


def service_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings of a test service: the knn pipeline (no LLM) and the model-free hashing
    embedder (these tests are about the service, not MiniLM) unless overridden."""
    values: dict[str, Any] = {
        "data_dir": data_dir, "tagging": {"pipeline": "knn"}, "embedder": {"backend": "hashing"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return Settings(**values)


def seed_data_dir(data_dir: Path, *, document: TaxonomyDocument | None = None, **overrides: Any) -> None:
    """The shop taxonomy (version 1; ``document`` instead, e.g. :func:`shop_attributes_document`)
    and its examples as the published index (embedded by the hashing embedder unless
    ``overrides`` say otherwise)."""
    settings = service_settings(data_dir, **overrides)
    data_dir.mkdir(parents=True, exist_ok=True)
    with TaxonomyStore(settings.taxonomy_db_url) as store:
        snap = store.import_document(document or shop_document(), expected_version=0, author="tests")
    embedder = embedder_from_settings(settings)
    index = build_index(embedder, shop_examples())
    with closing(open_index_store(settings)) as index_store:  # in the database when one is set
        publish_index(
            index_store, index, embedder=embedder, snapshot=snap,
            taxonomy_version=snap.version, lexical=LexicalClassifier.fit(list(index)),
        )
    # warm the embedding cache with the taxonomy's node texts, as a first start would
    CandidateGenerator(embedder, snap, index)


def copy_data_dir(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest)
    return dest


def make_keys(data_dir: Path) -> dict[str, str]:
    """One key per scope (named by the scope), plus "tags+feedback"."""
    store = KeyStore(key_store_path(data_dir))
    keys = {scope: store.create(frozenset({scope}), scope)[1] for scope in SCOPES}
    keys["tags+feedback"] = store.create(frozenset({"tags", "feedback"}), "tags+feedback")[1]
    store.close()
    return keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The documented error shape, with this status and code, and the request id echoed."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    shape = {"status", "code", "message", "request_id", "details"}
    # ``current`` (the resource as it is now) only with a review item's 409 changed
    assert set(error) == (shape | {"current"} if (status, code) == (409, "changed") else shape)
    assert error["status"] == status and error["code"] == code and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


@contextmanager
def running_app(settings: Settings, *, llm: LLMBackend | None = None, timeout: float = 180.0) -> Iterator[TestClient]:
    """The app in-process (lifespan run), once its engine is loaded."""
    app = create_app(settings, llm=llm)
    with TestClient(app, raise_server_exceptions=False) as client:
        state = app.state.tagsmith
        assert state.loaded.wait(timeout), "the engine did not load in time"
        assert state.services is not None, state.load_error
        yield client


# ---- a real server process ---------------------------------------------------------------
def start_server(port: int, env: dict[str, str], *, module: str | None = None, args: list[str] | None = None) -> subprocess.Popen[bytes]:
    """``tagsmith serve`` (or ``python -m module``) on loopback; output to a log file in the data dir."""
    log_path = Path(env["TAGSMITH_DATA_DIR"]) / f"server-{port}-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", module, *(args or [])] if module else [TAGSMITH, "serve", "--port", str(port)]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )


def server_log(env: dict[str, str]) -> str:
    logs = sorted(Path(env["TAGSMITH_DATA_DIR"]).glob("server-*.log"))
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in logs[-2:])


def wait_ready(proc: subprocess.Popen[bytes], base: str, env: dict[str, str], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server_log(env)}")
        try:
            if httpx.get(f"{base}/readyz", timeout=30).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"server not ready within {timeout} s:\n{server_log(env)}")


def stop_server(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def gate_background(monkeypatch: Any, method: str) -> threading.Event:
    """Hold ``TaggingState.<method>`` (a background retrain or refit, run by a timer) until the
    returned Event is set: what a test checks "meanwhile" holds however slow the cores."""
    from serve.tagging_state import TaggingState

    go = threading.Event()
    original = getattr(TaggingState, method)

    def gated(self: TaggingState) -> None:
        assert go.wait(60), f"the test never let {method} go"
        original(self)

    monkeypatch.setattr(TaggingState, method, gated)
    return go
