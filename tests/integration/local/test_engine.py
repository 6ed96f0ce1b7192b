"""The transformers engine: batched decoding gives each request exactly its own answer."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bedrock_ft.local.engine import Delta, PromptTooLongError, SamplingParams, TransformersEngine

PROMPTS = [
    "What is the capital of France?",
    "What is 2 + 2?",
    "Name a primary colour.",
    "Write one word that rhymes with cat, and nothing else, please.",
]


@pytest.fixture(scope="module")
def model(embedded_dir: Path) -> object:
    loaded = TransformersEngine(max_batch=8, batch_window=0.2).load(embedded_dir)
    yield loaded
    loaded.close()


def _answer(model: object, question: str, **params: object) -> list[Delta]:
    prompt = model.render_chat([{"role": "user", "content": question}])  # type: ignore[attr-defined]
    settings = SamplingParams(
        **{"max_new_tokens": 16, "temperature": 0.0, "add_special_tokens": False, **params}
    )  # type: ignore[arg-type]
    return list(model.stream(prompt, settings))  # type: ignore[attr-defined]


def test_concurrent_requests_match_sequential_ones(model: object) -> None:
    sequential = [_answer(model, q) for q in PROMPTS]
    results: dict[int, list[Delta]] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, _answer(model, PROMPTS[i])))
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, deltas in enumerate(sequential):
        assert "".join(d.text for d in results[index]) == "".join(d.text for d in deltas), PROMPTS[index]
        assert results[index][-1].completion_tokens == deltas[-1].completion_tokens
        assert results[index][-1].prompt_tokens == deltas[-1].prompt_tokens
    assert "Paris" in "".join(d.text for d in sequential[0])
    assert max(model.batch_sizes) > 1  # type: ignore[attr-defined]  # they really shared a batch


def test_a_prompt_over_the_context_is_refused_before_decoding(model: object) -> None:
    limit = model.max_positions  # type: ignore[attr-defined]
    with pytest.raises(PromptTooLongError, match=f"maximum context length is {limit} tokens"):
        model.stream("hello " * limit, SamplingParams(max_new_tokens=8))  # type: ignore[attr-defined]
    with pytest.raises(PromptTooLongError):
        model.stream("hello", SamplingParams(max_new_tokens=limit))  # type: ignore[attr-defined]


def test_requests_queued_on_a_closed_model_fail_instead_of_hanging(embedded_dir: Path) -> None:
    loaded = TransformersEngine(batch_window=0.0).load(embedded_dir)
    busy = loaded.stream("Once upon a time", SamplingParams(max_new_tokens=64, temperature=0.0))
    first = next(busy)  # its batch is running
    queued = loaded.stream("Hi", SamplingParams(max_new_tokens=4, temperature=0.0))
    loaded.close()
    assert [first, *busy][-1].completion_tokens == 64  # the running batch finishes
    with pytest.raises(RuntimeError, match="unloaded"):
        list(queued)
    with pytest.raises(RuntimeError, match="unloaded"):
        loaded.stream("Hi", SamplingParams(max_new_tokens=4))


def test_each_request_keeps_its_own_limits_and_stops(model: object) -> None:
    results: dict[str, list[Delta]] = {}
    jobs = {
        "short": {"max_new_tokens": 2},
        "stop": {"stop": (" Paris",)},
        "long": {"max_new_tokens": 16},
    }
    threads = [
        threading.Thread(target=lambda k=k, p=p: results.__setitem__(k, _answer(model, PROMPTS[0], **p)))
        for k, p in jobs.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["short"][-1].finish_reason == "length" and results["short"][-1].completion_tokens == 2
    assert results["stop"][-1].stop_sequence == " Paris"
    assert "Paris" not in "".join(d.text for d in results["stop"])
    assert "Paris" in "".join(d.text for d in results["long"])
    assert results["long"][-1].finish_reason == "stop"


def test_a_consumer_that_stops_early_frees_its_slot(model: object) -> None:
    prompt = model.render_chat([{"role": "user", "content": "Tell me a long story."}])  # type: ignore[attr-defined]
    stream = model.stream(prompt, SamplingParams(max_new_tokens=400, temperature=0.0))  # type: ignore[attr-defined]
    next(stream)
    request = stream.gi_frame.f_locals["request"]
    stream.close()  # the client went away
    assert "Paris" in "".join(d.text for d in _answer(model, PROMPTS[0]))
    # The abandoned request stopped decoding instead of running to its 400 tokens.
    assert request.cancelled and request.finished
    assert len(request.generated) < 100


@pytest.mark.parametrize(
    "question", ["Écris une phrase en français sur l'été.", "Reply with three emoji about the sea 🌊."]
)
def test_streamed_text_is_exactly_the_decoded_answer(model: object, question: str) -> None:
    """Incremental detokenization (and multi-byte characters split across tokens) loses nothing:
    the streamed pieces join to what transformers' own greedy generate decodes."""
    import torch

    prompt = model.render_chat([{"role": "user", "content": question}])  # type: ignore[attr-defined]
    streamed = list(
        model.stream(prompt, SamplingParams(max_new_tokens=48, temperature=0.0, add_special_tokens=False))
    )  # type: ignore[attr-defined]
    tokenizer, hf = model.tokenizer, model.model  # type: ignore[attr-defined]
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = hf.generate(**ids, max_new_tokens=48, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    expected = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "".join(d.text for d in streamed) == expected
    assert len(streamed) > 3


def test_incremental_text_keeps_the_space_after_a_special_token() -> None:
    """SentencePiece-style decoders drop the leading space of a decode; a special token in the
    context window would make the next word lose its space."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from bedrock_ft.local._transformers import IncrementalText

    vocab = {"<unk>": 0, "<tool>": 1, "▁Hello": 2, ",": 3, "▁world": 4, "▁again": 5}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<tool>"]})
    ids = [2, 3, 1, 4, 5]
    decoded = IncrementalText()
    for token in ids:
        decoded.add(tokenizer, token, set(tokenizer.all_special_ids))
    decoded.flush(tokenizer)
    assert decoded.text == tokenizer.decode(ids, skip_special_tokens=True) == "Hello, world again"


def test_top_p_zero_keeps_only_the_likeliest_token() -> None:
    import torch

    from bedrock_ft.local._transformers import _pick
    from bedrock_ft.local.engine import SamplingParams

    logits = torch.tensor([0.1, 2.0, 1.9, -1.0])
    generator = torch.Generator().manual_seed(0)
    params = SamplingParams(max_new_tokens=1, temperature=1.0, top_p=0.0)
    assert {_pick(logits, params, generator) for _ in range(50)} == {1}
