"""Many calls at once: batches through a bounded pool, and the awaitable twins of each call."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from bedrock_ft.errors import RequestValidationError
from bedrock_ft.runtime._batch import run_batch
from bedrock_ft.runtime._config import generation_params
from bedrock_ft.runtime._features import split_features
from bedrock_ft.runtime._results import BatchItem, BatchResult, Completion
from bedrock_ft.runtime._transport import Transport

if TYPE_CHECKING:
    from typing_extensions import Self

    from bedrock_ft.runtime._stream import TextStream
    from bedrock_ft.runtime.codecs import Codec

__all__ = ["ConcurrentCalls", "Messages"]

T = TypeVar("T")
Messages = Sequence[Mapping[str, Any]]


class ConcurrentCalls(Transport):
    """The batch and async methods of :class:`~bedrock_ft.runtime.ImportedModelClient`."""

    if TYPE_CHECKING:

        def complete(self, prompt: str, *, api_format: str | None = None, **params: Any) -> Completion: ...
        def chat(self, messages: Messages, *, api_format: str | None = None, **params: Any) -> Completion: ...
        def converse(self, messages: Messages, *, system: str | None = None, **params: Any) -> Completion: ...
        def converse_stream(
            self, messages: Messages, *, system: str | None = None, **params: Any
        ) -> TextStream: ...
        def stream(
            self, prompt_or_messages: str | Messages, *, api_format: str | None = None, **params: Any
        ) -> TextStream: ...
        def warm_up(self, timeout: float | None = None) -> float: ...
        def _codec_for(self, call: Literal["complete", "chat"], api_format: str | None) -> Codec: ...

    # --- many at once -----------------------------------------------------------------------------

    def batch_complete(
        self,
        prompts: Sequence[str],
        *,
        max_concurrency: int | None = None,
        on_item: Callable[[BatchItem], None] | None = None,
        progress_bar: bool = False,
        api_format: str | None = None,
        **params: Any,
    ) -> BatchResult:
        """:meth:`complete` on every prompt, ``max_concurrency`` (default ``InvokeConfig.max_concurrency``)
        at a time. The result keeps input order; a failed item keeps its error and the rest go on."""
        generation_params(
            self.config.generation,
            split_features(params, call="batch_complete()")[1],
            call="batch_complete()",
        )  # bad params: fail now
        self._codec_for("complete", api_format)  # and a format the model can't take
        return self._batch(prompts, self.complete, max_concurrency, on_item, progress_bar, api_format, params)

    def batch_chat(
        self,
        conversations: Sequence[Messages],
        *,
        max_concurrency: int | None = None,
        on_item: Callable[[BatchItem], None] | None = None,
        progress_bar: bool = False,
        api_format: str | None = None,
        **params: Any,
    ) -> BatchResult:
        """:meth:`chat` on every conversation, as :meth:`batch_complete` does."""
        generation_params(
            self.config.generation, split_features(params, call="batch_chat()")[1], call="batch_chat()"
        )
        self._codec_for("chat", api_format)
        return self._batch(
            conversations, self.chat, max_concurrency, on_item, progress_bar, api_format, params
        )

    def _batch(  # noqa: PLR0917 - internal, one caller per public batch method
        self,
        inputs: Sequence[Any],
        method: Callable[..., Completion],
        max_concurrency: int | None,
        on_item: Callable[[BatchItem], None] | None,
        progress_bar: bool,
        api_format: str | None,
        params: dict[str, Any],
    ) -> BatchResult:
        if isinstance(inputs, (str, bytes)):
            raise RequestValidationError("batch: expected a list of inputs, got a single string")
        limit = self.config.max_concurrency if max_concurrency is None else max_concurrency
        if limit < 1:
            raise RequestValidationError(f"batch: max_concurrency must be at least 1, got {limit}")
        self._client(pool=limit)
        return run_batch(
            list(inputs),
            lambda item: method(item, api_format=api_format, **params),
            max_concurrency=limit,
            on_item=on_item,
            progress_bar=progress_bar,
        )

    # --- async ----------------------------------------------------------------------------------------

    async def acomplete(self, prompt: str, **kwargs: Any) -> Completion:
        """:meth:`complete`, awaitable. Calls run on the client's pool of ``max_concurrency`` threads."""
        return await self._in_pool(functools.partial(self.complete, prompt, **kwargs))

    async def achat(self, messages: Messages, **kwargs: Any) -> Completion:
        return await self._in_pool(functools.partial(self.chat, messages, **kwargs))

    async def aconverse(self, messages: Messages, **kwargs: Any) -> Completion:
        return await self._in_pool(functools.partial(self.converse, messages, **kwargs))

    async def astream(self, prompt_or_messages: str | Messages, **kwargs: Any) -> AsyncIterator[str]:
        """:meth:`stream`, as an async iterator of text chunks."""
        stream = await self._in_pool(functools.partial(self.stream, prompt_or_messages, **kwargs))
        async for chunk in self._drain(stream):
            yield chunk

    async def _drain(self, stream: TextStream) -> AsyncIterator[str]:
        try:
            while True:
                chunk = await self._in_pool(functools.partial(next, stream, None))
                if chunk is None:
                    return
                yield chunk
        finally:
            stream.close()

    async def awarm_up(self, timeout: float | None = None) -> float:
        """:meth:`warm_up`, awaitable."""
        return await self._in_pool(functools.partial(self.warm_up, timeout))

    async def aconverse_stream(self, messages: Messages, **kwargs: Any) -> AsyncIterator[str]:
        """:meth:`converse_stream`, as an async iterator of text chunks."""
        stream = await self._in_pool(functools.partial(self.converse_stream, messages, **kwargs))
        async for chunk in self._drain(stream):
            yield chunk

    async def abatch_complete(self, prompts: Sequence[str], **kwargs: Any) -> BatchResult:
        return await asyncio.to_thread(self.batch_complete, prompts, **kwargs)

    async def abatch_chat(self, conversations: Sequence[Messages], **kwargs: Any) -> BatchResult:
        return await asyncio.to_thread(self.batch_chat, conversations, **kwargs)

    async def _in_pool(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.config.max_concurrency, thread_name_prefix="bedrock-ft-invoke"
                )
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    def close(self) -> None:
        """Stop the async calls' thread pool (the client can still be used; it starts a new one)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
