"""Retries of model invocations, with tenacity.

- ``ModelNotReadyException`` (a cold start: Bedrock is restoring a scaled-to-zero model) is retried
  with exponential backoff and full jitter until ``cold_start_timeout`` seconds have passed;
- ``ThrottlingException``, ``ServiceUnavailableException`` (and other 5xx), ``ModelTimeoutException``
  and a connection dropped before the response (a pooled keep-alive connection the server had just
  closed: an invocation has no side effect, so it is safe to send again) are retried the same way, up to
  ``max_attempts`` requests;
- anything else (validation errors above all) is raised at once.

botocore's own retries are off for runtime calls (one attempt per request), so every retry is this
policy's, visible to ``on_retry`` and counted in usage. The runtime client keeps botocore's adaptive
rate limiter, though: a ThrottlingException lowers the send rate of every thread sharing the client,
so a batch settles at the rate the service allows instead of retrying into the limit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type

from bedrock_ft.errors import (
    BedrockFTError,
    ConnectionDroppedError,
    ModelNotReadyError,
    ModelTimeoutError,
    ServiceUnavailableError,
    ThrottledError,
)
from bedrock_ft.runtime._config import InvokeConfig
from bedrock_ft.runtime._results import RetryEvent, RetryKind

__all__ = ["OnRetry", "attempts_of", "call_with_retries"]

T = TypeVar("T")
OnRetry = Callable[[RetryEvent], None]

_KINDS: tuple[tuple[type[BedrockFTError], RetryKind], ...] = (
    (ModelNotReadyError, "cold_start"),
    (ThrottledError, "throttled"),
    (ServiceUnavailableError, "unavailable"),
    (ModelTimeoutError, "timeout"),
    (ConnectionDroppedError, "dropped"),
)
RETRYABLE = tuple(cls for cls, _ in _KINDS)


def _kind(error: BaseException) -> RetryKind:
    for cls, kind in _KINDS:
        if isinstance(error, cls):
            return kind
    raise AssertionError(error)


def call_with_retries(
    fn: Callable[[], T], config: InvokeConfig, *, operation: str, on_retry: OnRetry | None = None
) -> tuple[T, int]:
    """``fn()``, retried by the policy above. Returns its result and the number of attempts."""
    started = time.monotonic()
    waits: dict[str, float] = {}
    # Failed attempts so far, by kind: a cold start has a time budget of its own, so throttles after a
    # long restore still get their max_attempts, and each kind's backoff grows from its own count.
    tally = {"cold": 0, "other": 0}
    counted: set[int] = set()

    def count(state: RetryCallState) -> tuple[bool, int]:
        cold = isinstance(state.outcome.exception() if state.outcome else None, ModelNotReadyError)
        key = "cold" if cold else "other"
        if state.attempt_number not in counted:
            counted.add(state.attempt_number)
            tally[key] += 1
        return cold, tally[key]

    def stop(state: RetryCallState) -> bool:
        cold, failures = count(state)
        if cold:
            return time.monotonic() - started >= config.cold_start_timeout
        return failures >= config.max_attempts

    def wait(state: RetryCallState) -> float:
        cold, failures = count(state)
        # full jitter: uniform in [0, min(cap, base * 2^n)], at least a tenth of the base
        ceiling = min(config.max_backoff, config.initial_backoff * 2 ** (failures - 1))
        seconds = max(config.initial_backoff / 10, random.uniform(0, ceiling))
        if cold:  # never sleep past the cold-start deadline
            seconds = min(seconds, max(0.0, config.cold_start_timeout - (time.monotonic() - started)))
        waits["next"] = seconds
        return seconds

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if on_retry is None or not isinstance(error, BedrockFTError):
            return
        on_retry(
            RetryEvent(
                kind=_kind(error),
                error=error,
                attempt=state.attempt_number,
                wait_s=waits.get("next", 0.0),
                elapsed_s=time.monotonic() - started,
                operation=operation,
            )
        )

    retrying = Retrying(
        retry=retry_if_exception_type(RETRYABLE),
        stop=stop,
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )
    attempts = 0

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        return fn()

    try:
        result = retrying(attempt)
    except ModelNotReadyError as exc:
        waited = time.monotonic() - started
        raise _again(
            exc,
            f"{exc} The model was still not ready after {waited:.0f} s and {attempts} attempt(s); "
            "raise InvokeConfig.cold_start_timeout, or call warm_up() first.",
            attempts,
        ) from exc
    except RETRYABLE as exc:
        if attempts > 1:
            message = f"{exc} (gave up after {attempts} attempts; InvokeConfig.max_attempts)"
            raise _again(exc, message, attempts) from exc
        exc.attempts = attempts  # type: ignore[attr-defined]
        raise
    except BedrockFTError as exc:  # not retryable: raised as it is, with the requests it took
        exc.attempts = attempts  # type: ignore[attr-defined]
        raise
    return result, attempts


def attempts_of(error: BaseException) -> int:
    """Requests sent before ``error`` ended the call (1 when it was not retried)."""
    return int(getattr(error, "attempts", 1))


def _again(error: BedrockFTError, message: str, attempts: int) -> BedrockFTError:
    again = type(error)(message)
    again.aws = error.aws
    again.attempts = attempts  # type: ignore[attr-defined]
    return again
