"""The same boto3 code against AWS or a local endpoint: only AWS_ENDPOINT_URL_<SERVICE> differs.

This starts moto's S3 server on loopback (the `local` extra) so it runs offline. Against AWS, skip the
server and the endpoint variable; nothing else changes.

    python examples/aws_clients.py
"""

from __future__ import annotations

import os

from moto.server import ThreadedMotoServer

from bedrock_ft import AwsConfig, ResourceNotFoundError
from bedrock_ft.errors import translate_client_errors


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL_S3=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    try:
        aws = AwsConfig()  # region, profile and endpoints from the environment, standard retries
        s3 = aws.client("s3")
        print(f"s3 endpoint: {s3.meta.endpoint_url}")
        s3.create_bucket(Bucket="models")
        s3.put_object(Bucket="models", Key="hello.txt", Body=b"hi")
        print(f"objects: {[o['Key'] for o in s3.list_objects_v2(Bucket='models')['Contents']]}")
        try:
            with translate_client_errors():
                s3.get_object(Bucket="models", Key="missing.txt")
        except ResourceNotFoundError as err:
            assert err.aws is not None
            print(f"translated: {type(err).__name__} (service code {err.aws.code})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
