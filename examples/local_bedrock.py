"""Rehearse a Custom Model Import offline: the local S3 and the local Bedrock, driven by plain boto3.

Inside `LocalStack()` the standard AWS_ENDPOINT_URL_* variables point boto3 at loopback servers, so
this is the code you would run against AWS, minus the bill:

1. upload the embedded model (SmolLM2-135M-Instruct) to S3;
2. run a Custom Model Import job and wait for it;
3. invoke the imported model in each body format, stream an answer, and converse.

    python examples/local_bedrock.py
"""

from __future__ import annotations

import json
import time

import boto3

from bedrock_ft.local import LocalStack
from bedrock_ft.models import embedded_model

QUESTION = "What is the capital of France?"


def invoke(runtime: object, model_arn: str, body: dict[str, object]) -> dict[str, object]:
    """InvokeModel; a cold model answers ModelNotReadyException (HTTP 429) until it has loaded."""
    for _ in range(60):
        try:
            response = runtime.invoke_model(modelId=model_arn, body=json.dumps(body))  # type: ignore[attr-defined]
            return dict(json.loads(response["body"].read()))
        except runtime.exceptions.ModelNotReadyException:  # type: ignore[attr-defined]
            time.sleep(0.5)
    raise TimeoutError("the model did not load")


def main() -> None:
    model_dir = embedded_model()
    with LocalStack() as stack:
        print(f"local Bedrock at {stack.bedrock_url}")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="my-models")
        for path in model_dir.iterdir():
            if path.is_file():
                s3.upload_file(str(path), "my-models", f"smollm2/{path.name}")

        bedrock = boto3.client("bedrock")
        job_arn = bedrock.create_model_import_job(
            jobName="smollm2-import",
            importedModelName="smollm2",
            roleArn="arn:aws:iam::123456789012:role/BedrockModelImport",
            modelDataSource={"s3DataSource": {"s3Uri": "s3://my-models/smollm2/"}},
        )["jobArn"]
        while (job := bedrock.get_model_import_job(jobIdentifier=job_arn))["status"] == "InProgress":
            time.sleep(0.5)
        print(f"import job: {job['status']}")
        model_arn = job["importedModelArn"]
        model = bedrock.get_imported_model(modelIdentifier=model_arn)
        print(f"architecture: {model['modelArchitecture']}, instruct: {model['instructSupported']}")

        runtime = boto3.client("bedrock-runtime")
        # temperature 0: greedy. Without it the OpenAI formats sample at OpenAI's default of 1.0.
        chat_body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 32, "temperature": 0}
        chat = invoke(runtime, model_arn, chat_body)
        print(f"OpenAIChatCompletion: {chat['choices'][0]['message']['content']}")  # type: ignore[index]

        prompt = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
        completion = invoke(runtime, model_arn, {"prompt": prompt, "max_gen_len": 32, "temperature": 0})
        print(f"BedrockCompletion: {completion['generation']} (stop_reason={completion['stop_reason']})")
        short = invoke(runtime, model_arn, {"prompt": prompt, "max_tokens": 3, "temperature": 0})
        print(f"OpenAICompletion, max_tokens=3: finish_reason={short['choices'][0]['finish_reason']}")  # type: ignore[index]

        stream = runtime.invoke_model_with_response_stream(
            modelId=model_arn, body=json.dumps({"prompt": prompt, "max_gen_len": 32, "temperature": 0})
        )
        pieces = [json.loads(event["chunk"]["bytes"])["generation"] for event in stream["body"]]
        print(f"streamed {len(pieces)} chunks: {''.join(pieces)}")

        reply = runtime.converse(
            modelId=model_arn,
            messages=[{"role": "user", "content": [{"text": QUESTION}]}],
            inferenceConfig={"maxTokens": 32, "temperature": 0},
        )
        print(f"Converse: {reply['output']['message']['content'][0]['text']} ({reply['stopReason']})")

        try:
            bedrock.create_model_import_job(
                jobName="bad name!",
                importedModelName="x",
                roleArn="arn:aws:iam::123456789012:role/r",
                modelDataSource={"s3DataSource": {"s3Uri": "s3://my-models/smollm2/"}},
            )
        except bedrock.exceptions.ValidationException as exc:
            print(f"refused: {exc.response['Error']['Message'][:60]}")


if __name__ == "__main__":
    main()
