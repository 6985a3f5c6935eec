"""The review queue (issue 20): flagged results enter it from tags, batch, jobs and tag-file;
reviewers claim, accept, correct or skip them (who and when recorded, a decision is feedback);
it is ordered by agent/review_priority.py, exported as JSONL, and never half-decided."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agent.review_priority import ReviewSignal, order_for_review
from serve.api.review.protocol import ReviewItemOut
from serve.review import Conflict, EnqueueEntry, NotFound, ReviewStore
from tests.serve.helpers import assert_error, auth, make_keys, running_app, service_settings

TRAIN = {"id": "sku-train", "title": "Wooden toy train set with 40 tracks and a bridge"}
#: every result is flagged (low_confidence): the queue's behaviour, not the tagger's, is tested
FLAG_ALL = {"review_threshold": 0.999}


def _state(client: TestClient) -> Any:
    return client.app.state.tagsmith  # type: ignore[attr-defined]


def _flush(client: TestClient) -> None:
    assert _state(client).review_enqueuer.flush(10)


def _queue(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    _flush(client)
    r = client.get("/v1/review/items", params=params, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def app(shop_dir: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir, tagging=FLAG_ALL)) as client:
        yield client, keys


# ---- entering the queue --------------------------------------------------------------------
def test_tags_and_batch_enqueue_when_asked_and_dedup(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    t, f = auth(keys["tags"]), auth(keys["feedback"])
    assert client.post("/v1/tags", json=TRAIN, headers=t).json()["needs_review"] is True
    assert _queue(client, f)["total"] == 0  # off by default
    assert client.post("/v1/tags?review=true", json=TRAIN, headers=t).status_code == 200
    assert client.post("/v1/tags?review=true", json=TRAIN, headers=t).status_code == 200  # same id: one item
    no_id = {"title": "Magnetic  drawing board for kids"}
    for title in (no_id["title"], "magnetic drawing board FOR kids "):  # same text (case, spaces): one item
        assert client.post("/v1/tags?review=true", json={"title": title}, headers=t).status_code == 200
    batch = {"products": [{"id": "b1", "title": "Cast iron grill pan"}, {"id": "b2", "title": "Bluetooth speaker"}]}
    assert client.post("/v1/tags:batch?review=true", json=batch, headers=t).status_code == 200
    assert client.post("/v1/tags:batch?review=false", json={"products": [{"id": "b3", "title": "Mug"}]},
                       headers=t).status_code == 200
    queue = _queue(client, f)
    by_product = {i["product"].get("id") or "no id": i for i in queue["items"]}
    assert queue["total"] == 4, by_product.keys()
    assert by_product["sku-train"]["times_enqueued"] == 2 and by_product["sku-train"]["source"] == "api"
    assert by_product["no id"]["times_enqueued"] == 2  # the latest text kept
    assert by_product["no id"]["product"]["title"] == "magnetic drawing board FOR kids"
    assert by_product["b1"]["source"] == by_product["b2"]["source"] == "batch"
    item = by_product["sku-train"]
    assert item["status"] == "open" and item["claim"] is None and item["decision"] is None
    assert item["reasons"] and item["reasons"] == item["result"]["evidence"]["review_reasons"]
    assert item["category"] == item["result"]["tags"][0]["id"] and item["taxonomy_version"] == 1
    assert item["index_generation"] == "gen-000001" and item["product"]["title"] == TRAIN["title"]


def test_the_setting_enqueues_and_a_request_can_say_no(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir, tagging=FLAG_ALL, review={"enqueue": True})) as client:
        t, f = auth(keys["tags"]), auth(keys["feedback"])
        client.post("/v1/tags", json=TRAIN, headers=t)
        client.post("/v1/tags?review=false", json={"id": "x", "title": "Chef knife"}, headers=t)
        assert [i["product"]["id"] for i in _queue(client, f)["items"]] == ["sku-train"]


def test_unflagged_results_and_a_failing_store_never_affect_tagging(shop_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir, review={"enqueue": True})) as client:
        t, f = auth(keys["tags"]), auth(keys["feedback"])
        sure = client.post("/v1/tags", json={"id": "p", "title": "Cast iron skillet 10 inch"}, headers=t).json()
        assert sure["needs_review"] is False and _queue(client, f)["total"] == 0  # only flagged ones enter

        state = _state(client)

        def broken(*_: Any, **__: Any) -> Any:
            raise OSError("disk full")

        monkeypatch.setattr(state.review_store, "enqueue_many", broken)
        monkeypatch.setattr(state.settings.tagging, "review_threshold", 0.999)
        r = client.post("/v1/tags?review=true", json=TRAIN, headers=t)
        assert r.status_code == 200 and r.json()["needs_review"] is True
        _flush(client)
        assert state.review_enqueuer.failed >= 1
        monkeypatch.undo()
        # a full buffer drops (counted), never blocks
        enqueuer = state.review_enqueuer
        monkeypatch.setattr(enqueuer, "max_pending", 0)
        assert client.post("/v1/tags?review=true", json=TRAIN, headers=t).status_code == 200
        assert enqueuer.dropped >= 1
        metrics = client.get("/metrics").text
        assert 'tagsmith_review_enqueue_total{outcome="dropped"}' in metrics
        assert 'tagsmith_review_enqueue_total{outcome="failed"}' in metrics


def test_jobs_enqueue_by_option(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    t, f = auth(keys["tags"]), auth(keys["feedback"])
    lines = "".join(json.dumps({"custom_id": str(i), "product": {"id": f"job-{i}", "title": title}}) + "\n"
                    for i, title in enumerate(["Espresso cups set", "Kids puzzle 100 pieces", "Phone case"]))
    ids = {}
    for review in ("true", "false"):
        r = client.post(f"/v1/jobs?review={review}", content=lines.replace("job-", f"job{review}-").encode(),
                        headers={**t, "content-type": "application/jsonl"})
        assert r.status_code == 202, r.text
        assert r.json()["review"] is (review == "true")
        ids[review] = r.json()["id"]
    for job_id in ids.values():
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job_id}", headers=t).json()["state"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    items = _queue(client, f)["items"]
    assert sorted(i["product"]["id"] for i in items) == ["jobtrue-0", "jobtrue-1", "jobtrue-2"]
    assert {i["source"] for i in items} == {f"job:{ids['true']}"}


def test_tag_file_review_queue(shop_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serve.cli import app as cli

    for key, value in {"TAGSMITH_DATA_DIR": str(shop_dir), "TAGSMITH_EMBEDDER__BACKEND": "hashing",
                       "TAGSMITH_TAGGING__PIPELINE": "knn", "TAGSMITH_TAGGING__REVIEW_THRESHOLD": "0.999"}.items():
        monkeypatch.setenv(key, value)
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in (TRAIN, {"id": "q2", "title": "USB-C cable"})), encoding="utf-8")
    runner = CliRunner()
    done = runner.invoke(cli, ["tag-file", str(src), "-o", str(out), "--review-queue"])
    assert done.exit_code == 0, done.output
    assert "2 flagged into the review queue" in " ".join(done.output.split())
    store = ReviewStore(shop_dir / "review.db")
    items, total = store.list_items()
    store.close()
    assert total == 2 and {i.source for i in items} == {"tag-file"}
    assert {i.product["id"] for i in items} == {"sku-train", "q2"} and items[0].index_generation == "gen-000001"
    # the server sees them; the CLI's export writes what the API's does
    keys = make_keys(shop_dir)
    exported = tmp_path / "review.jsonl"
    assert runner.invoke(cli, ["review", "export", "-o", str(exported)]).exit_code == 0
    with running_app(service_settings(shop_dir)) as client:
        api = client.get("/v1/review/export", headers=auth(keys["feedback"]))
        assert api.status_code == 200 and api.headers["content-type"].startswith("application/jsonl")
        assert api.text == exported.read_text(encoding="utf-8") and api.text.count("\n") == 2


# ---- ordering ------------------------------------------------------------------------------
def _result(top: str | None, p: float, runner: str | None = None, rp: float = 0.0,
            reasons: tuple[str, ...] = ("low_confidence",)) -> dict[str, Any]:
    candidates = [{"id": c, "name": c, "probability": q} for c, q in ((top, p), (runner, rp)) if c]
    return {
        "tags": [{"id": top, "name": top, "path": [top], "confidence": p}] if top else [],
        "needs_review": True, "taxonomy_version": 1, "pipeline": "knn",
        "evidence": {"neighbors": [], "llm": {"attempts": 0, "fallback_used": False},
                     "candidates": candidates, "review_reasons": list(reasons)},
        "timings_ms": {"retrieval": 0.0, "llm": 0.0, "validation": 0.0, "total": 0.0},
    }


def _entry(pid: str, *args: Any, **kwargs: Any) -> EnqueueEntry:
    return EnqueueEntry({"id": pid, "title": f"product {pid}"}, _result(*args, **kwargs), "api", 1, "gen-000001")


def test_order_is_review_prioritys(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "review.db")
    entries = [
        _entry("sure", "a", 0.9, "b", 0.05),
        _entry("split-1", "a", 0.45, "b", 0.44), _entry("split-2", "a", 0.46, "b", 0.44),
        _entry("split-3", "a", 0.47, "b", 0.43),
        _entry("rare", "c", 0.5, "d", 0.3), _entry("none", None, 0.0, reasons=("no_tag",)),
    ]
    store.enqueue_many(entries)
    support = {"a": 30, "b": 30, "c": 1, "d": 0}
    items, total = store.list_items(class_support=support)
    assert total == 6
    got = [i.product["id"] for i in items]
    # the same order order_for_review gives the same signals (listed in enqueue order)
    sig = [ReviewSignal(0.9, "a", "b", 0.05), ReviewSignal(0.45, "a", "b", 0.44), ReviewSignal(0.46, "a", "b", 0.44),
           ReviewSignal(0.47, "a", "b", 0.43), ReviewSignal(0.5, "c", "d", 0.3), ReviewSignal(0.0, None)]
    assert got == [entries[i].product["id"] for i in order_for_review(sig, support)]
    assert got.index("sure") == 5  # the confident one last
    assert got.index("rare") < got.index("split-2")  # one doubt does not fill the head of the queue
    # a claim takes them in that order; filters keep it
    assert [i.product["id"] for i in store.claim_next(2, "k1", "alice", class_support=support)] == got[:2]
    assert [i.product["id"] for i in store.list_items(statuses=("open",), class_support=support)[0]] == got[2:]
    assert [i.product["id"] for i in store.list_items(reason="no_tag")[0]] == ["none"]
    assert {i.product["id"] for i in store.list_items(categories={"a"})[0]} == {"sure", "split-1", "split-2", "split-3"}
    store.close()


# ---- claims --------------------------------------------------------------------------------
def test_claims_expire_and_return_to_the_queue(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "review.db", claim_ttl_s=60)
    store.enqueue_many([_entry("p1", "a", 0.4)])
    (item,) = store.claim_next(5, "k1", "alice")
    assert item.claim is not None and item.claim.by == "k1" and item.claim.by_name == "alice"
    assert store.claim_next(5, "k2", "bob") == []
    with pytest.raises(Conflict) as refused:
        store.claim(item.id, "k2", "bob")
    assert refused.value.code == "claimed" and "alice" in refused.value.message
    later = datetime.now(UTC) + timedelta(seconds=61)
    assert store.get(item.id).effective_status(later) == "open"
    assert store.stats(now=later).open == 1 and store.stats().claimed == 1
    (taken,) = store.claim_next(1, "k2", "bob", now=later)  # abandoned: back in the queue
    assert taken.claim is not None and taken.claim.by == "k2"
    with pytest.raises(Conflict):
        store.decide(item.id, "k1", "alice", "skipped", now=later)  # alice's claim is gone
    assert [e["action"] for e in store.events(item.id)] == ["claim", "claim"]
    store.close()


def _race(stores: list[ReviewStore], item_id: str, *, named: bool) -> list[str]:
    """Every store (its own connections) claims at once: the named item, or the next one."""
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def claim(i: int, store: ReviewStore) -> None:
        barrier.wait()
        try:
            if named:
                store.claim(item_id, f"k{i}", f"reviewer {i}")
                outcomes.append(f"k{i}")
            else:
                outcomes.append(f"k{i}" if store.claim_next(1, f"k{i}", f"reviewer {i}") else "none")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=claim, args=(i, s)) for i, s in enumerate(stores)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    return outcomes


def test_two_reviewers_racing_for_one_item_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "review.db"
    ReviewStore(path).enqueue_many([_entry("p1", "a", 0.4)])
    stores = [ReviewStore(path) for _ in range(4)]  # separate engines: separate connections
    item_id = stores[0].list_items(statuses=("open",))[0][0].id
    for attempt in range(6):  # several rounds: a race that passes once by luck fails another time
        outcomes = _race(stores, item_id, named=attempt % 2 == 1)
        winners = [o for o in outcomes if o.startswith("k")]
        assert len(outcomes) == 4 and len(winners) == 1, outcomes
        holder = stores[0].get(item_id).claim
        assert holder is not None and holder.by == winners[0]
        stores[0].release(item_id, holder.by)
    for s in stores:
        s.close()


# ---- decisions over HTTP -------------------------------------------------------------------
def test_accept_correct_skip_record_who_and_when(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    t, f, a = auth(keys["tags"]), auth(keys["feedback"]), auth(keys["admin"])
    feedback_id = keys["feedback"].split("_")[1]
    for i, title in enumerate(["Espresso machine 15 bar", "Kids puzzle 100 pieces", "Chef knife 20 cm"]):
        client.post("/v1/tags?review=true", json={"id": f"p{i}", "title": title}, headers=t)
    _flush(client)  # flagged results enter the queue in the background
    claimed = client.post("/v1/review/claim", json={"n": 2}, headers=f)
    assert claimed.status_code == 200, claimed.text
    first, second = claimed.json()["items"]
    assert first["status"] == "claimed" and first["claim"]["by"] == feedback_id and first["claim"]["by_name"] == "feedback"
    assert_error(client.post(f"/v1/review/items/{first['id']}/claim", headers=a), 409, "claimed")
    assert_error(client.post(f"/v1/review/items/{first['id']}/accept", headers=a), 409, "claimed")

    before = datetime.now(UTC)
    accepted = client.post(f"/v1/review/items/{first['id']}/accept", json={"note": "fine"}, headers=f)
    assert accepted.status_code == 200, accepted.text
    d = accepted.json()["decision"]
    assert accepted.json()["status"] == "accepted" and accepted.json()["claim"] is None
    assert d["verdict"] == "accepted" and d["by"] == feedback_id and d["by_name"] == "feedback" and d["note"] == "fine"
    assert before <= datetime.fromisoformat(d["at"]) <= datetime.now(UTC)
    assert d["category"] == first["category"] and d["feedback_id"].startswith("fb_")
    log = client.get("/v1/feedback", headers=f).json()["items"]
    assert [(r["id"], r["verdict"], r["example_id"], r["tags"], r["reviewer"]) for r in log] == [
        (d["feedback_id"], "accept", first["product"]["id"], [first["category"]], feedback_id)]
    assert client.get(f"/v1/examples/{first['product']['id']}", headers=f).json()["tags"] == [first["category"]]

    # the admin corrects the third (unclaimed) one, and skips the second after its release
    third = next(i for i in _queue(client, f, status="open")["items"])
    right = "kitchen/knives" if third["category"] != "kitchen/knives" else "kitchen/coffee"
    corrected = client.post(f"/v1/review/items/{third['id']}/correct", json={"category": right}, headers=a).json()
    assert corrected["decision"]["verdict"] == "corrected" and corrected["decision"]["by_name"] == "admin"
    assert corrected["decision"]["category"] == right
    assert_error(client.post(f"/v1/review/items/{second['id']}/release", headers=auth(keys["tags+feedback"])), 409, "claimed")
    released = client.post(f"/v1/review/items/{second['id']}/release", headers=f).json()
    assert released["status"] == "open" and released["claim"] is None
    assert_error(client.post(f"/v1/review/items/{second['id']}/release", headers=f), 409, "not_claimed")
    skipped = client.post(f"/v1/review/items/{second['id']}/skip", json={"note": "not a product"}, headers=f).json()
    assert skipped["decision"]["verdict"] == "skipped" and skipped["decision"]["feedback_id"] is None
    assert client.get("/v1/feedback", headers=f).json()["total"] == 2  # a skip teaches nothing

    history = client.get(f"/v1/review/items/{second['id']}/history", headers=f).json()
    assert [(e["action"], e["by_name"]) for e in history["events"]] == [
        ("claim", "feedback"), ("release", "feedback"), ("skipped", "feedback")]
    assert history["events"][2]["detail"]["note"] == "not a product"
    assert_error(client.get("/v1/review/items/rv_nope/history", headers=f), 404, "not_found")
    for verb in ("accept", "skip", "claim", "release"):
        assert_error(client.post(f"/v1/review/items/{first['id']}/{verb}", headers=f), 409, "already_decided")
    stats = client.get("/v1/review/stats", headers=f).json()
    assert stats["open"] == 0 and stats["claimed"] == 0 and stats["decided_total"] == 3
    assert stats["decided_today"] == {"accepted": 1, "corrected": 1, "skipped": 1}
    decided = _queue(client, f, status=["accepted", "corrected", "skipped"])
    assert [i["id"] for i in decided["items"]] == [second["id"], third["id"], first["id"]]  # newest decision first
    # a product decided the same way is not enqueued again; a disagreeing result is
    client.post("/v1/tags?review=true", json={"id": first["product"]["id"], "title": first["product"]["title"]}, headers=t)
    assert _queue(client, f)["total"] == 0


def test_a_correction_changes_the_next_tag_of_that_product(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    t, f = auth(keys["tags"]), auth(keys["feedback"])
    before = client.post("/v1/tags?review=true", json=TRAIN, headers=t).json()["tags"][0]["id"]
    right = next(leaf for leaf in ("toys/blocks", "toys/puzzles") if leaf != before)
    (item,) = _queue(client, f)["items"]
    r = client.post(f"/v1/review/items/{item['id']}/correct", json={"category": right, "note": "trains"}, headers=f)
    assert r.status_code == 200, r.text
    after = client.post("/v1/tags?review=true", json=TRAIN, headers=t).json()
    assert after["tags"][0]["id"] == right and after["evidence"]["neighbors"][0]["id"] == "sku-train"
    # still flagged (everything is here), but it agrees with the decision: not back in the queue
    assert after["needs_review"] and _queue(client, f)["total"] == 0


def test_errors_are_documented_4xx(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    t, f = auth(keys["tags"]), auth(keys["feedback"])
    client.post("/v1/tags?review=true", json=TRAIN, headers=t)
    (item,) = _queue(client, f)["items"]
    path = f"/v1/review/items/{item['id']}"
    assert_error(client.get("/v1/review/items"), 401, "unauthorized")
    assert_error(client.get("/v1/review/items", headers=t), 403, "forbidden")
    assert_error(client.post(f"{path}/accept", headers=t), 403, "forbidden")
    assert_error(client.get("/v1/review/items/rv_nope", headers=f), 404, "not_found")
    assert_error(client.post("/v1/review/items/rv_nope/correct", json={"category": "toys/blocks"}, headers=f), 404, "not_found")
    off = assert_error(client.post(f"{path}/correct", json={"category": "Toys/Blocks"}, headers=f), 422, "invalid_tags")
    assert "toys/blocks" in off["message"]
    assert_error(client.post(f"{path}/correct", json={"category": "toys"}, headers=f), 422, "invalid_tags")
    assert_error(client.post(f"{path}/correct", json={"category": "toys/blocks", "attribute_values": {"Colour": "Red"}},
                             headers=f), 422, "invalid_attribute_values")
    assert_error(client.post(f"{path}/correct", json={}, headers=f), 422, "validation_error")
    assert_error(client.post(f"{path}/skip", json={"verdict": "x"}, headers=f), 422, "validation_error")
    assert_error(client.get("/v1/review/items?status=done", headers=f), 422, "validation_error")
    assert_error(client.get("/v1/review/items?category=nope", headers=f), 422, "unknown_category")
    assert_error(client.post("/v1/review/claim", json={"n": 0}, headers=f), 422, "validation_error")
    assert_error(client.post(f"{path}/release", headers=f), 409, "not_claimed")
    # a refused correction leaves the item as it was: open, undecided, unclaimed
    again = client.get(path, headers=f).json()
    assert again["status"] == "open" and again["claim"] is None and again["decision"] is None
    assert client.get("/v1/feedback", headers=f).json()["total"] == 0
    # a result without a category cannot be accepted
    state = _state(client)
    state.review_store.enqueue_many([_entry("empty", None, 0.0, reasons=("no_tag",))])
    empty = _queue(client, f, reason="no_tag")["items"][0]
    assert_error(client.post(f"/v1/review/items/{empty['id']}/accept", headers=f), 409, "nothing_to_accept")
    # the category filter takes a node and its descendants
    assert _queue(client, f, category=item["category"].split("/")[0])["total"] == 1
    spec = client.get("/openapi.json").json()["paths"]
    for p, op in (("/v1/review/items/{item_id}/correct", "post"), ("/v1/review/items/{item_id}/accept", "post")):
        assert {"401", "403", "404", "409", "422"} <= set(spec[p][op]["responses"]), p


def test_export_round_trip(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    t, f = auth(keys["tags"]), auth(keys["feedback"])
    for i, title in enumerate(["Espresso machine", "Puzzle 1000 pieces", "Phone charger 20W"]):
        client.post("/v1/tags?review=true", json={"id": f"e{i}", "title": title}, headers=t)
    items = _queue(client, f)["items"]
    client.post(f"/v1/review/items/{items[0]['id']}/skip", headers=f)
    text = client.get("/v1/review/export", headers=f).text
    exported = [ReviewItemOut.model_validate_json(line) for line in text.splitlines()]
    assert len(exported) == 3
    for out in exported:  # each line is the item as GET returns it
        assert out.model_dump(mode="json") == client.get(f"/v1/review/items/{out.id}", headers=f).json()
    only = client.get("/v1/review/export?status=skipped", headers=f).text.splitlines()
    assert [json.loads(line)["id"] for line in only] == [items[0]["id"]]


# ---- atomicity -----------------------------------------------------------------------------
def test_a_crash_mid_decision_leaves_no_half_decided_item(app: tuple[TestClient, dict[str, str]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from serve.api.auth import Principal
    from serve.api.review.protocol import CorrectionRequest
    from serve.review import store as store_module

    client, keys = app
    t = auth(keys["tags"])
    client.post("/v1/tags?review=true", json=TRAIN, headers=t)
    _flush(client)
    service = _state(client).services.review
    me = Principal("k1", "alice", frozenset({"feedback"}))
    item_id = service.list_items().items[0].id
    right = "toys/blocks"

    # the feedback (example, index generation) fails: nothing decided, the item not left claimed
    def feedback_down(*_: Any, **__: Any) -> Any:
        raise RuntimeError("index store unavailable")

    monkeypatch.setattr(service.feedback, "submit", feedback_down)
    with pytest.raises(RuntimeError):
        service.correct(me, item_id, CorrectionRequest(category=right))
    item = service.get(item_id)
    assert item.status == "open" and item.decision is None and item.claim is None
    monkeypatch.undo()

    # the process dies while the decision is written (after the row's UPDATE, before the commit)
    real_event = store_module._event

    def dies(conn: Any, item_id: str, action: str, *args: Any) -> None:
        if action in ("accepted", "corrected", "skipped"):
            raise KeyboardInterrupt("killed")
        real_event(conn, item_id, action, *args)

    monkeypatch.setattr(store_module, "_event", dies)
    with pytest.raises(KeyboardInterrupt):
        service.correct(me, item_id, CorrectionRequest(category=right))
    item = service.get(item_id)
    assert item.status == "claimed" and item.decision is None  # rolled back: still alice's, undecided
    raw = service.store.list_items(statuses=("accepted", "corrected", "skipped"))
    assert raw == ([], 0)
    monkeypatch.undo()

    done = service.correct(me, item_id, CorrectionRequest(category=right))  # the retry completes it
    assert done.status == "corrected" and done.decision is not None and done.decision.by == "k1"
    assert client.get(f"/v1/examples/{TRAIN['id']}", headers=auth(keys["feedback"])).json()["tags"] == [right]
    with pytest.raises(NotFound):
        service.store.get("rv_missing")


def test_two_reviewers_deciding_one_open_item_exactly_one_decides(app: tuple[TestClient, dict[str, str]]) -> None:
    from serve.api.auth import Principal
    from serve.api.errors import ApiError
    from serve.api.review.protocol import CorrectionRequest

    client, keys = app
    client.post("/v1/tags?review=true", json=TRAIN, headers=auth(keys["tags"]))
    _flush(client)
    service = _state(client).services.review
    item_id = service.list_items().items[0].id
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(name: str, category: str) -> None:
        who = Principal(name, name, frozenset({"feedback"}))
        barrier.wait()
        try:
            outcomes.append(service.correct(who, item_id, CorrectionRequest(category=category)).decision.by)
        except ApiError as exc:
            outcomes.append(f"{exc.status} {exc.code}")

    threads = [threading.Thread(target=decide, args=a) for a in (("alice", "toys/blocks"), ("bob", "toys/puzzles"))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    winners = [o for o in outcomes if o in ("alice", "bob")]
    # the loser either meets the winner's claim or (when the winner's whole correction ran
    # first, on busy cores) its decision: a 409 either way, never a second decision
    losers = [o for o in outcomes if o not in winners]
    assert len(winners) == 1 and losers in (["409 claimed"], ["409 already_decided"]), outcomes
    final = service.get(item_id)
    assert final.decision is not None and final.decision.by == winners[0]
    log = client.get("/v1/feedback", headers=auth(keys["feedback"])).json()["items"]
    assert [r["reviewer"] for r in log] == winners  # the loser taught the index nothing
    assert client.get(f"/v1/examples/{TRAIN['id']}", headers=auth(keys["feedback"])).json()["tags"] == [final.decision.category]


# ---- deciding on what the reviewer saw -----------------------------------------------------
def test_revisions_count_content_changes_not_claims(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path / "review.db")
    store.enqueue_many([_entry("p1", "a", 0.4)])
    (item,), _ = store.list_items()
    assert item.revision == 1
    store.claim(item.id, "k1")
    assert store.get(item.id).revision == 1  # a claim is no content change
    store.enqueue_many([_entry("p1", "b", 0.3)])  # flagged again while claimed: the new result replaces the old
    now = store.get(item.id)
    assert now.revision == 2 and now.category == "b" and now.claim is not None and now.claim.by == "k1"
    with pytest.raises(Conflict) as stale:
        store.decide(item.id, "k1", None, "skipped", expected_revision=1)
    assert stale.value.code == "changed" and stale.value.item.revision == 2 and stale.value.item.category == "b"
    assert store.get(item.id).decision is None
    done = store.decide(item.id, "k1", None, "skipped", expected_revision=2)
    assert done.status == "skipped" and done.revision == 3
    store.close()


def test_a_queue_from_before_revisions_is_migrated(tmp_path: Path) -> None:
    from sqlalchemy import text as sql

    path = tmp_path / "review.db"
    ReviewStore(path).enqueue_many([_entry("p1", "a", 0.4)])
    from serve.sqlite import sqlite_engine

    engine = sqlite_engine(path)
    with engine.begin() as conn:  # the queue as a release before migrations made it
        conn.execute(sql("ALTER TABLE review_items DROP COLUMN revision"))
        conn.execute(sql("DROP TABLE alembic_version_review"))
    engine.dispose()
    store = ReviewStore(path)
    (item,), _ = store.list_items()
    assert item.revision == 1
    store.enqueue_many([_entry("p1", "b", 0.4)])
    assert store.get(item.id).revision == 2
    store.close()


def test_accept_or_correct_on_a_changed_item_is_409_changed_with_the_current_item(
    app: tuple[TestClient, dict[str, str]],
) -> None:
    client, keys = app
    t, f = auth(keys["tags"]), auth(keys["feedback"])
    client.post("/v1/tags?review=true", json=TRAIN, headers=t)
    _flush(client)  # flagged results enter the queue in the background
    (seen,) = client.post("/v1/review/claim", json={"n": 1}, headers=f).json()["items"]
    assert seen["revision"] == 1
    # the catalog sends the product again, with a new text, while the reviewer looks at it
    again = {"id": TRAIN["id"], "title": "Kids jigsaw puzzle 500 pieces, animals"}
    client.post("/v1/tags?review=true", json=again, headers=t)
    _flush(client)
    url = f"/v1/review/items/{seen['id']}"
    for verb, body in (("accept", {"revision": 1}), ("correct", {"category": "toys/blocks", "revision": 1}),
                       ("skip", {"revision": 1})):
        r = client.post(f"{url}/{verb}", json=body, headers=f)
        assert_error(r, 409, "changed")
        current = r.json()["error"]["current"]
        assert current["revision"] == 2 and current["product"]["title"] == again["title"]
        assert current["status"] == "claimed" and current["decision"] is None
    assert client.get("/v1/feedback", headers=f).json()["total"] == 0  # nothing was taught
    assert "current" not in client.get("/v1/review/items/rv_nope", headers=f).json()["error"]  # other errors: as ever
    accepted = client.post(f"{url}/accept", json={"revision": 2}, headers=f).json()
    assert accepted["status"] == "accepted" and accepted["revision"] == 3
    assert accepted["decision"]["category"] == current["category"]  # the suggestion the reviewer saw last
    example = client.get(f"/v1/examples/{TRAIN['id']}", headers=f).json()
    assert example["title"] == again["title"] and example["tags"] == [current["category"]]


def test_a_crash_between_the_feedback_and_the_decision_leaves_one_feedback_record(
    app: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from serve.api.auth import Principal
    from serve.api.review.protocol import CorrectionRequest

    client, keys = app
    f = auth(keys["feedback"])
    client.post("/v1/tags?review=true", json=TRAIN, headers=auth(keys["tags"]))
    _flush(client)
    service = _state(client).services.review
    me = Principal("k1", "alice", frozenset({"feedback"}))
    item_id = service.list_items().items[0].id
    real_decide = service.store.decide

    def killed_before_the_decision(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt("killed after the feedback was written")

    monkeypatch.setattr(service.store, "decide", killed_before_the_decision)
    with pytest.raises(KeyboardInterrupt):
        service.correct(me, item_id, CorrectionRequest(category="toys/blocks", revision=1))
    log = client.get("/v1/feedback", headers=f).json()
    assert log["total"] == 1 and service.get(item_id).status == "claimed"  # the feedback made it, the decision not
    monkeypatch.setattr(service.store, "decide", real_decide)

    done = service.correct(me, item_id, CorrectionRequest(category="toys/puzzles", revision=1))  # the retry
    after = client.get("/v1/feedback", headers=f).json()
    assert after["total"] == 1, after  # one record: the retry replaced it
    (record,) = after["items"]
    assert record["id"] == log["items"][0]["id"] == done.decision.feedback_id  # type: ignore[union-attr]
    assert record["tags"] == ["toys/puzzles"] and done.status == "corrected"
    assert client.get(f"/v1/examples/{TRAIN['id']}", headers=f).json()["tags"] == ["toys/puzzles"]
