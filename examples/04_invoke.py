"""Invoke an imported model with ImportedModelClient: the same code for AWS and the local Bedrock.

    python examples/04_invoke.py                         # offline: the embedded model, local Bedrock
    python examples/04_invoke.py --region us-east-1 \\
        --model-arn arn:aws:bedrock:us-east-1:111122223333:imported-model/abcd1234efgh   # real AWS

Without --region it imports the embedded model (SmolLM2-135M-Instruct) into a local Bedrock first, with
a throttle of 4 requests a second so the batch below meets ThrottlingException, as it would at a
real quota. With --region it invokes your imported model with your usual AWS credentials (it costs
money: Custom Model Units while the model is active).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
from collections.abc import Callable, Iterator

from pydantic import BaseModel

from bedrock_ft import (
    AwsConfig,
    ImportedModelClient,
    InvokeConfig,
    RequestValidationError,
    UnsupportedFormatError,
)
from bedrock_ft.runtime import RetryEvent

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


class Capital(BaseModel):
    city: str
    country: str


@contextlib.contextmanager
def _client(
    args: argparse.Namespace, config: InvokeConfig, on_retry: Callable[[RetryEvent], None]
) -> Iterator[ImportedModelClient]:
    """A client of your model on AWS with --region; otherwise of the embedded model, imported locally."""
    progress = print if args.verbose else None
    if args.region:
        config = config.replace(aws=AwsConfig(region=args.region, profile=args.profile))
        yield ImportedModelClient.from_arn(args.model_arn, config, on_retry=on_retry, progress=progress)
        return
    from bedrock_ft.importing import BedrockImporter, ImportConfig, create_import_role
    from bedrock_ft.local import LocalBedrockConfig, LocalStack
    from bedrock_ft.models import embedded_model

    with LocalStack(LocalBedrockConfig(throttle_rps=4.0)) as stack:
        aws = stack.aws_config()
        aws.client("s3").create_bucket(Bucket="example-models")
        role = create_import_role("BedrockModelImport", "s3://example-models/smollm2/", aws=aws)
        settings = ImportConfig(
            model_name="smollm2-invoke",
            s3_uri="s3://example-models/smollm2/",
            role_arn=role,
            aws=aws,
            poll_interval=1.0,  # a local import job takes seconds
        )
        imported = BedrockImporter(settings).import_model(embedded_model())
        yield ImportedModelClient(imported, config.replace(aws=aws), on_retry=on_retry, progress=progress)


def _features(client: ImportedModelClient) -> None:
    """Models imported after 2025-11-11: JSON that matches a schema, per-token log probabilities, tools."""
    ask = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]
    capital = client.chat(ask, response_format=Capital, max_tokens=40).parsed
    print(f"structured: {capital!r}")
    scored = client.chat(QUESTION, logprobs=2, max_tokens=8)
    tokens = scored.logprobs or ()
    least = min(tokens, key=lambda t: t.logprob)
    print(f"logprobs: {len(tokens)} tokens, least sure of {least.token!r} (p={math.exp(least.logprob):.2f})")
    try:  # tools need a model whose chat template renders them (GPT-OSS); SmolLM2's doesn't
        called = client.chat(QUESTION, tools=[WEATHER_TOOL])
        print(f"tools: {[(c.name, c.parsed_arguments()) for c in called.tool_calls]}")
    except RequestValidationError as exc:
        print(f"tools: refused: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--region", help="Invoke in this AWS region (default: the local Bedrock).")
    parser.add_argument("--profile", help="AWS profile.")
    parser.add_argument("--model-arn", help="Your imported model's ARN (with --region).")
    parser.add_argument("--verbose", action="store_true", help="Print every retry.")
    args = parser.parse_args()
    if args.region and not args.model_arn:
        parser.error("--region needs --model-arn")

    # Greedy and short by default; every call can override these.
    config = InvokeConfig(generation={"temperature": 0.0, "max_tokens": 32})
    retried: list[RetryEvent] = []  # every retry: cold starts, throttling
    with _client(args, config, retried.append) as client:
        print(f"model: {client.model.model_name}, formats: {', '.join(client.formats)}")

        # The first call after an import (or an idle spell) is a cold start: retried until it loads.
        seconds = client.warm_up()
        print(f"warm after {seconds:.1f} s")

        chat = client.chat(QUESTION)
        print(f"chat ({chat.api_format}): {chat.text}")
        print(f"  finish {chat.finish_reason}, {chat.input_tokens} tokens in, {chat.output_tokens} out")

        # The complete form takes the prompt as it is: here, rendered with the training template.
        prompt = client.render_chat(QUESTION)
        done = client.complete(prompt, api_format="OpenAICompletion", max_tokens=5)
        print(f"complete ({done.api_format}, max_tokens=5): {done.text!r}, finish {done.finish_reason}")

        with client.stream(QUESTION) as stream:
            chunks = list(stream)
        print(f"stream: {len(chunks)} chunks: {''.join(chunks)}")

        if "Converse" in client.formats:
            print(f"converse: {client.converse(QUESTION).text}")

        _features(client)

        # Many at once: order kept, throttling absorbed (fewer sends, then retries), nothing lost.
        before = len(retried)
        capitals = ["France", "Italy", "Spain", "Germany", "Japan"] * 8
        questions = [[{"role": "user", "content": f"What is the capital of {c}?"}] for c in capitals]
        batch = client.batch_chat(questions, max_concurrency=8, max_tokens=8)
        rate = batch.requests_per_second
        in_order = [item.input for item in batch] == questions
        print(
            f"batch: all {len(batch)} answered: {batch.ok}, in input order: {in_order}, {rate:.1f} requests/s"
        )
        throttled = sum(e.kind == "throttled" for e in retried[before:])
        print(f"  throttled and retried: {throttled > 0} ({batch.usage.retries} retries)")
        print(f"  {capitals[0]} -> {batch.texts[0]}")

        async def together() -> list[str]:
            answers = await asyncio.gather(*(client.achat(QUESTION) for _ in range(3)))
            return [a.text for a in answers]

        print(f"async: {len(set(asyncio.run(together())))} distinct answer(s) to 3 identical questions")

        # Bad input fails before anything is sent, naming what is wrong.
        for bad in (
            lambda: client.complete(""),
            lambda: client.chat(QUESTION, temperature=5),
            lambda: client.chat([{"role": "robot", "content": "hi"}]),
        ):
            try:
                bad()
            except RequestValidationError as exc:
                print(f"refused: {exc}")
        try:
            client.complete(prompt, api_format="OpenAIChatCompletion")
        except UnsupportedFormatError as exc:
            print(f"refused: {exc}")

        usage = client.usage.as_dict()
        print(
            f"usage: {usage['requests']} requests, {usage['input_tokens']} in, {usage['output_tokens']} out"
        )


if __name__ == "__main__":
    main()
