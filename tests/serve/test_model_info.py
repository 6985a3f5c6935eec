"""What a backend knows about its model reaches the tagger inside the service.

A fine-tuned model only answers well on the prompt it was trained on, with the blend weight
fitted for it; both come from its manifest (``tagsmith-model.json``) through the backend.
The service wraps the backend (LLM health tracking): the wrapper must not hide them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from agent.llm import ChatMessage, ModelInfo, OptionScores, option_scorer
from agent.llm.fake import FaultInjectingBackend, FixedLatencyBackend
from agent.llm.manifest import MANIFEST_FILE, MANIFEST_FORMAT, PromptProfile, profile_json
from agent.llm.openai_compat import OpenAICompatBackend
from agent.tagger import Tagger
from serve.llm_health import LLMHealth, track
from serve.metrics import Metrics
from tests.serve.helpers import auth, make_keys, running_app, service_settings

PROFILE = PromptProfile(
    max_candidates=3, max_examples=1, max_product_chars=200, max_example_chars=80,
    max_label_chars=100, version="tag.ft1",
)
BLEND = 1.0


def _fine_tuned_dir(path: Path) -> Path:
    path.mkdir()
    manifest = {"format": MANIFEST_FORMAT, "prompt": profile_json(PROFILE), "blend": {"llm_weight": BLEND}}
    (path / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return path


def _server(sent: list[dict[str, Any]]) -> httpx2.MockTransport:
    """An OpenAI-compatible server that answers the last allowed letter and records requests."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.read())
        sent.append(body)
        enum = body["response_format"]["json_schema"]["schema"]["properties"]["tags"]["items"]["enum"]
        return httpx2.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps({"tags": [enum[-1]]})}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14},
        })

    return httpx2.MockTransport(answer)


def _service_tagger(client: Any) -> Tagger:
    services = client.app.state.tagsmith.services
    tagger: Tagger = services.tagging.current.tagger
    return tagger


def test_the_service_tags_with_the_fine_tuned_models_prompt_and_blend_weight(shop_dir: Path, tmp_path: Path) -> None:
    sent: list[dict[str, Any]] = []
    backend = OpenAICompatBackend(
        "http://llm.test/v1", "tagsmith-ft", max_retries=0, transport=_server(sent),
        model_dir=_fine_tuned_dir(tmp_path / "model"),
    )
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir, tagging={"pipeline": "rag"}), llm=backend) as client:
        tagger = _service_tagger(client)
        assert (tagger.config.max_candidates, tagger.config.max_examples) == (PROFILE.max_candidates, PROFILE.max_examples)
        assert tagger.prompts.version == PROFILE.version
        assert tagger.prompts._max_product == PROFILE.max_product_chars
        assert tagger.llm_weight == BLEND
        r = client.post("/v1/tags", json={"title": "Cast iron skillet 10 inch"}, headers=auth(keys["tags"]))
        assert r.status_code == 200, r.text
        result = r.json()
    # what went to the server is the fine-tuned prompt: its template, candidates and examples
    assert sent
    for body in sent:
        assert body["model"] == "tagsmith-ft"
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        assert system.startswith("Pick the candidate category")  # tag.ft1
        assert user.count("<example>") <= PROFILE.max_examples
        assert len(body["response_format"]["json_schema"]["schema"]["properties"]["tags"]["items"]["enum"]) <= 3
    # blend weight 1: the LLM's one-hot choice is the answer, with all the confidence
    assert result["tags"][0]["confidence"] == 1.0
    assert result["evidence"]["llm"]["model"] == "tagsmith-ft" and result["evidence"]["llm"]["attempts"] == 1


class _Scorer(FixedLatencyBackend):
    def __init__(self) -> None:
        super().__init__(0.0, info=ModelInfo(name="scorer", model="m", scores_options=True, prompt_profile=PROFILE))

    def score_options(
        self, messages: Any, options: Any, *, assistant_prefix: str = "", continuations: Any = ()
    ) -> OptionScores:
        return OptionScores(probs=dict.fromkeys(options, 1.0 / len(options)), mass=1.0)


def test_the_health_tracker_hands_on_the_model_info_and_the_scoring_capability() -> None:
    health = LLMHealth()
    info = ModelInfo(name="x", model="ft", max_concurrency=7, prompt_profile=PROFILE, blend_weight=0.6)
    plain = track(FixedLatencyBackend(0.0, info=info), health, Metrics(), owned=False)
    assert plain.info is info  # one object: no field can be forgotten
    assert option_scorer(plain) is None
    with pytest.raises(TypeError, match="does not score"):
        plain.score_options([ChatMessage("user", "x")], ["A"])  # type: ignore[attr-defined]
    scorer = _Scorer()
    tracked = track(scorer, health, Metrics(), owned=False)
    assert tracked.info is scorer.info and option_scorer(tracked) is tracked
    assert tracked.score_options([ChatMessage("user", "x")], ["A", "B"]).probs == {"A": 0.5, "B": 0.5}  # type: ignore[attr-defined]
    assert health.successes == 1
    # a fault injector only generates, whatever it wraps
    assert option_scorer(FaultInjectingBackend(scorer)) is None
    with pytest.raises(TypeError, match="says it scores options"):
        option_scorer(FixedLatencyBackend(0.0, info=scorer.info))
