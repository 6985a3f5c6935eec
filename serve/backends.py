"""Map :class:`Settings` onto the core packages' plain constructor arguments."""

from __future__ import annotations

from agent.llm import LLMBackend, create_backend
from serve.settings import Settings


def backend_from_settings(settings: Settings) -> LLMBackend:
    llm = settings.llm
    return create_backend(
        llm.backend,
        model=llm.model,
        base_url=llm.endpoints() or None,
        model_dir=llm.model_dir,
        api_key=llm.api_key.get_secret_value(),
        timeout_s=llm.timeout_s,
        max_retries=llm.max_retries,
        max_concurrency=llm.max_concurrency,
        structured_output=llm.structured_output,
        n_ctx=llm.n_ctx,
        n_threads=llm.n_threads,
        eject_s=llm.eject_s,
        eject_max_s=llm.eject_max_s,
    )
