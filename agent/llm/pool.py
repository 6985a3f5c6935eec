"""Several OpenAI-compatible servers of the same model as one :class:`LLMBackend`.

Client-side balancing for a fleet of ``vllm serve`` processes (one per GPU) without a load
balancer in front (the alternative, one URL in front of vLLM's own data parallelism or a
proxy, is in ``docs/vllm.md``):

- **least outstanding requests**: each request goes to the healthy endpoint with the fewest
  requests in flight from this process; ties go round-robin, so an idle pool spreads too;
- **ejection**: an endpoint whose request fails to connect, times out or answers 5xx (or
  an answer without choices) is taken out of the rotation for a back-off period
  (``eject_s``, doubled after each failed probe up to ``eject_max_s``);
- **probe before re-admission**: when its back-off is over, an ejected endpoint gets one
  ``GET /models`` (a background thread, never a product's request); it takes traffic again
  only once that answers 200;
- **retry elsewhere**: a request that failed that way is sent again to another endpoint
  that has not failed it yet, at most ``max_retries`` times (the members do not retry
  themselves: the pool is the retry, so a dead endpoint costs one failed attempt, not
  openai's back-off). A 4xx answer (:class:`LLMRequestRejectedError`) is the request's fault:
  raised at once, not retried, and the endpoint stays in.

Thread-safe: the tagger and the service call ``generate`` from many threads at once. The
backend is synchronous like the other backends; async code calls it through
``asyncio.to_thread`` (as ``/readyz`` does). With every endpoint ejected a request fails at
once with :class:`LLMUnavailableError` (the service answers 503 or degrades, and ``/readyz``
says which endpoints are out and why).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from agent.llm.base import (
    ChatMessage,
    Generation,
    LLMBackend,
    LLMRequestRejectedError,
    LLMUnavailableError,
    ModelInfo,
)


@runtime_checkable
class PoolMember(LLMBackend, Protocol):
    """A backend the pool can balance over: it has an address and can be probed."""

    @property
    def base_url(self) -> str: ...

    def probe(self, timeout_s: float = 5.0) -> None:
        """Return when the server is up; raise :class:`LLMUnavailableError` otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    base_url: str
    healthy: bool
    outstanding: int
    served: int
    """requests this endpoint answered (a 4xx included)"""
    failed: int
    """requests that failed on it (connect, timeout, 5xx)"""
    ejected_for_s: float
    """seconds until its next probe (0 when healthy or a probe is due)"""
    last_error: str | None


@dataclass(slots=True)
class _Endpoint:
    member: PoolMember
    outstanding: int = 0
    served: int = 0
    failed: int = 0
    ejected_until: float | None = None
    """None: in the rotation; else the clock time of its next probe"""
    strikes: int = 0
    """failed probes since it was ejected (the back-off doubles with each)"""
    probing: bool = False
    last_error: str | None = None


class EndpointPool:
    def __init__(
        self,
        members: Sequence[PoolMember],
        *,
        max_retries: int = 2,
        eject_s: float = 2.0,
        eject_max_s: float = 60.0,
        probe_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        background_probes: bool = True,
    ) -> None:
        """``background_probes=False``: nothing probes by itself; call :meth:`probe_due`
        (tests drive the pool with their own clock that way)."""
        if not members:
            raise ValueError("an endpoint pool needs at least one endpoint")
        if max_retries < 0 or eject_s <= 0 or eject_max_s < eject_s or probe_timeout_s <= 0:
            raise ValueError("max_retries >= 0, 0 < eject_s <= eject_max_s and probe_timeout_s > 0")
        self._endpoints = [_Endpoint(m) for m in members]
        self._max_retries = max_retries
        self._eject_s = eject_s
        self._eject_max_s = eject_max_s
        self._probe_timeout_s = probe_timeout_s
        self._clock = clock
        self._background = background_probes
        self._lock = threading.Lock()
        self._next = 0  # round-robin start for ties
        self._stop = threading.Event()
        self._prober: threading.Thread | None = None
        first = members[0].info
        self._info = replace(
            first, name="openai-pool",
            max_concurrency=sum(m.info.max_concurrency for m in members),
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def base_url(self) -> str:
        return ",".join(ep.member.base_url for ep in self._endpoints)

    # --- choosing an endpoint ---------------------------------------------------------------

    def _acquire(self, tried: set[int]) -> int | None:
        with self._lock:
            n = len(self._endpoints)
            best: int | None = None
            for k in range(n):
                i = (self._next + k) % n
                ep = self._endpoints[i]
                if i in tried or ep.ejected_until is not None:
                    continue
                if best is None or ep.outstanding < self._endpoints[best].outstanding:
                    best = i
            if best is not None:
                self._endpoints[best].outstanding += 1
                self._next = (best + 1) % n
            return best

    def _release(self, i: int, error: LLMUnavailableError | None) -> None:
        with self._lock:
            ep = self._endpoints[i]
            ep.outstanding -= 1
            if error is None:
                ep.served += 1
                return
            ep.failed += 1
            ep.last_error = str(error)[:300]
            if ep.ejected_until is None:  # the first of its in-flight failures ejects it
                ep.strikes = 0
                ep.ejected_until = self._clock() + self._eject_s
                self._start_prober()

    def _unavailable(self, last: LLMUnavailableError | None, attempts: int) -> LLMUnavailableError:
        if last is not None and attempts > self._max_retries:
            return LLMUnavailableError(f"{last} (after {attempts} attempts on as many endpoints)")
        if last is not None:
            return LLMUnavailableError(f"{last} (no other healthy endpoint to retry on)")
        with self._lock:
            now = self._clock()
            out = [ep for ep in self._endpoints if ep.ejected_until is not None]
            nxt = min((ep.ejected_until or now) - now for ep in out) if out else 0.0
            why = "; ".join(f"{ep.member.base_url}: {ep.last_error}" for ep in out)
        return LLMUnavailableError(
            f"no healthy LLM endpoint: all {len(out)} ejected (next probe in {max(nxt, 0.0):.1f} s): {why}"
        )

    # --- the backend interface --------------------------------------------------------------

    def generate(
        self,
        messages: Sequence[ChatMessage],
        schema: Mapping[str, Any],
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
        top_logprobs: int = 0,
    ) -> Generation:
        tried: set[int] = set()
        last: LLMUnavailableError | None = None
        for _attempt in range(self._max_retries + 1):
            i = self._acquire(tried)
            if i is None:
                break
            tried.add(i)
            try:
                out = self._endpoints[i].member.generate(
                    messages, schema, max_tokens=max_tokens, temperature=temperature, seed=seed,
                    top_logprobs=top_logprobs,
                )
            except LLMRequestRejectedError:
                self._release(i, None)  # answered: healthy, and the request is at fault
                raise
            except LLMUnavailableError as exc:
                self._release(i, exc)
                last = exc
                continue
            except BaseException:
                self._release(i, None)
                raise
            self._release(i, None)
            return out
        raise self._unavailable(last, len(tried))

    # --- probing ejected endpoints ----------------------------------------------------------

    def probe_due(self) -> list[str]:
        """Probe every ejected endpoint whose back-off is over (one probe each at a time);
        re-admit those that answer. Returns the base URLs re-admitted."""
        with self._lock:
            now = self._clock()
            due = [
                ep for ep in self._endpoints
                if ep.ejected_until is not None and ep.ejected_until <= now and not ep.probing
            ]
            for ep in due:
                ep.probing = True
        back: list[str] = []
        for ep in due:
            error: LLMUnavailableError | None = None
            try:
                ep.member.probe(self._probe_timeout_s)
            except LLMUnavailableError as exc:
                error = exc
            with self._lock:
                ep.probing = False
                if error is None:
                    ep.ejected_until, ep.strikes = None, 0
                    back.append(ep.member.base_url)
                else:
                    ep.strikes += 1
                    ep.last_error = str(error)[:300]
                    backoff = min(self._eject_s * 2.0 ** ep.strikes, self._eject_max_s)
                    ep.ejected_until = self._clock() + backoff
        return back

    def _start_prober(self) -> None:
        """Under the lock: make sure the background prober runs (it ends by itself once
        every endpoint is back)."""
        if not self._background or self._stop.is_set() or self._prober is not None:
            return
        self._prober = threading.Thread(target=self._probe_loop, name="tagsmith-llm-probe", daemon=True)
        self._prober.start()

    def _probe_loop(self) -> None:
        while not self._stop.is_set():
            self.probe_due()
            with self._lock:
                now = self._clock()
                waits = [
                    ep.ejected_until - now for ep in self._endpoints
                    if ep.ejected_until is not None and not ep.probing
                ]
                if not waits:
                    self._prober = None
                    return
            self._stop.wait(min(max(min(waits), 0.01), self._eject_max_s))
        with self._lock:
            self._prober = None

    # --- state ------------------------------------------------------------------------------

    def status(self) -> list[EndpointStatus]:
        with self._lock:
            now = self._clock()
            return [
                EndpointStatus(
                    base_url=ep.member.base_url, healthy=ep.ejected_until is None,
                    outstanding=ep.outstanding, served=ep.served, failed=ep.failed,
                    ejected_for_s=max(0.0, (ep.ejected_until or now) - now),
                    last_error=ep.last_error,
                )
                for ep in self._endpoints
            ]

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            prober = self._prober
        if prober is not None:
            prober.join(timeout=self._probe_timeout_s + 1.0)
        for ep in self._endpoints:
            ep.member.close()


def pool_status(llm: LLMBackend | None) -> list[EndpointStatus] | None:
    """The endpoints of ``llm`` when it is (or wraps, as ``inner``) a pool, else None."""
    seen = 0
    while llm is not None and seen < 8:
        if isinstance(llm, EndpointPool):
            return llm.status()
        llm = getattr(llm, "inner", None)
        seen += 1
    return None
