"""The local Bedrock HTTP server: one Starlette app serving the control plane and the runtime.

Routes, input members and error statuses all come from botocore's ``bedrock`` and
``bedrock-runtime`` service models, so boto3, the AWS CLI and any SigV4 client talk to it unchanged.
Signatures are not checked: the server binds loopback only, by default.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bedrock_ft.local._config import LocalBedrockConfig
from bedrock_ft.local._control import ControlPlane
from bedrock_ft.local._errors import ServiceError
from bedrock_ft.local._pool import ModelPool
from bedrock_ft.local._runtime import Runtime, dumps
from bedrock_ft.local._store import Store
from bedrock_ft.local.engine import InferenceEngine, TransformersEngine

__all__ = ["BedrockServer", "LocalBedrock"]

log = logging.getLogger("bedrock_ft.local")

_CONTROL_OPS = {
    "CreateModelImportJob": "create_model_import_job",
    "GetModelImportJob": "get_model_import_job",
    "ListModelImportJobs": "list_model_import_jobs",
    "GetImportedModel": "get_imported_model",
    "ListImportedModels": "list_imported_models",
    "DeleteImportedModel": "delete_imported_model",
}
_RUNTIME_OPS = ("InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream")
_SAGEMAKER_OPS = ("CreateTrainingJob", "DescribeTrainingJob", "ListTrainingJobs", "StopTrainingJob")


class _Throttle:
    """A token bucket over all runtime requests: above ``rate`` per second, ThrottlingException."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.tokens = max(rate or 0.0, 1.0)
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def check(self) -> None:
        if self.rate is None:
            return
        with self.lock:
            current = time.monotonic()
            capacity = max(self.rate, 1.0)
            self.tokens = min(capacity, self.tokens + (current - self.updated) * self.rate)
            self.updated = current
            if self.tokens < 1.0:
                raise ServiceError(
                    "ThrottlingException", "Too many requests, please wait before trying again."
                )
            self.tokens -= 1.0


class LocalBedrock:
    """The service behind the HTTP layer: state, import jobs, loaded models. Usable without HTTP."""

    def __init__(
        self,
        config: LocalBedrockConfig,
        *,
        s3_endpoint_url: str | None = None,
        engine: InferenceEngine | None = None,
    ) -> None:
        self.config = config
        self._tmp: str | None = None
        if config.data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="bedrock-ft-local-")
        self.data_dir = Path(self._tmp) if self._tmp else Path(config.data_dir or ".").expanduser()
        self.store = Store(self.data_dir)
        self.pool = ModelPool(
            engine or TransformersEngine(device=config.device),
            cold_start=config.cold_start,
            idle_unload_seconds=config.idle_unload_seconds,
        )
        self._s3_endpoint_url = s3_endpoint_url
        self._s3_client_cache: Any = None
        self.control = ControlPlane(self.store, config, self._s3_client, self.pool.unload)
        self.runtime = Runtime(self.control, self.pool, max_tokens_limit=config.max_new_tokens_limit)
        self.throttle = _Throttle(config.throttle_rps)
        from bedrock_ft.local._sagemaker import TrainingJobs

        self.sagemaker = TrainingJobs(
            self.data_dir,
            region=config.region,
            account_id=config.account_id,
            client=self._local_client,
            sync_interval=config.checkpoint_sync_seconds,
            interrupt_after=config.spot_interruption_after_checkpoints,
        )

    def _s3_client(self) -> Any:
        if self._s3_client_cache is None:
            import boto3

            if self._s3_endpoint_url:  # our own local S3: dummy credentials, whatever the environment holds
                self._s3_client_cache = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self._s3_endpoint_url,
                    region_name=self.config.region,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                )
            else:
                from bedrock_ft.aws import AwsConfig

                self._s3_client_cache = AwsConfig(region=self.config.region).client("s3")
        return self._s3_client_cache

    def _local_client(self, service: str) -> Any:
        """A client of the local S3's server (moto serves CloudWatch Logs too) for training jobs."""
        if service == "s3":
            return self._s3_client()
        import boto3

        kwargs: dict[str, Any] = {"region_name": self.config.region}
        if self._s3_endpoint_url:
            kwargs.update(
                endpoint_url=self._s3_endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return boto3.session.Session().client(service, **kwargs)

    def close(self) -> None:
        self.sagemaker.close()
        self.control.join(timeout=30)
        self.pool.close()
        self.store.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def call(self, operation: str, params: dict[str, Any]) -> Any:
        """Run one operation on checked input members. Streaming operations return an iterator."""
        if operation in _CONTROL_OPS:
            return getattr(self.control, _CONTROL_OPS[operation])(params)
        if operation in _SAGEMAKER_OPS:
            return self.sagemaker.call(operation, params)
        self.throttle.check()
        if operation == "InvokeModel":
            return self.runtime.invoke(params)
        if operation == "InvokeModelWithResponseStream":
            return self.runtime.invoke_stream(params)
        if operation == "Converse":
            return self.runtime.converse(params)
        if operation == "ConverseStream":
            return self.runtime.converse_stream(params)
        raise ServiceError("UnknownOperationException", f"{operation} is not served by the local Bedrock.")


def build_app(service: LocalBedrock) -> Any:
    """The Starlette app for ``service``."""
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from bedrock_ft.local import _eventstream, _shapes

    debug = service.config.debug
    # Runtime calls wait on generation and hold their worker threads (anyio's default pool of 40); the
    # control plane gets threads of its own, so GetModelImportJob never queues behind invocations.
    control_threads = anyio.CapacityLimiter(8)

    def error(exc: ServiceError, request_id: str) -> Response:
        headers = {"x-amzn-ErrorType": exc.code, "x-amzn-RequestId": request_id}
        return JSONResponse({"message": exc.message}, status_code=exc.status, headers=headers)

    def endpoint(service_name: str, operation: str) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            request_id = str(uuid.uuid4())
            body = await request.body()
            if debug:
                log.debug("%s %s %s body=%r", request.method, request.url.path, operation, body[:4096])
            path_params, query = dict(request.path_params), request.query_params.multi_items()
            request_headers = dict(request.headers)

            def run() -> Any:  # parsing and validating a large body is work too: off the event loop
                params = _shapes.parse_request(
                    service_name, operation, path_params, query, body, request_headers
                )
                _shapes.validate_input(service_name, operation, params)
                return service.call(operation, params)

            try:
                limiter = control_threads if operation in _CONTROL_OPS else None
                result = await anyio.to_thread.run_sync(run, limiter=limiter)
            except _shapes.ShapeValidationError as exc:  # ValidationException, or SerializationException
                return error(ServiceError(exc.code, str(exc)), request_id)
            except ServiceError as exc:
                log.info("%s -> %s: %s", operation, exc.code, exc.message)
                return error(exc, request_id)
            except Exception as exc:
                log.exception("%s failed", operation)
                message = f"Internal error in the local Bedrock: {type(exc).__name__}: {exc}"
                return error(ServiceError("InternalServerException", message), request_id)
            headers = {"x-amzn-RequestId": request_id}
            if operation == "InvokeModel":
                body, extra = result
                headers.update(extra)
                return Response(dumps(body), media_type="application/json", headers=headers)
            if operation == "InvokeModelWithResponseStream":
                headers["X-Amzn-Bedrock-Content-Type"] = "application/json"
                stream = _framed(result, _eventstream.invoke_stream_chunk)
                return StreamingResponse(
                    stream, media_type="application/vnd.amazon.eventstream", headers=headers
                )
            if operation == "ConverseStream":
                stream = _framed(result, lambda event: _eventstream.encode_event(event[0], dumps(event[1])))
                return StreamingResponse(
                    stream, media_type="application/vnd.amazon.eventstream", headers=headers
                )
            if operation == "Converse":
                return Response(dumps(result), media_type="application/json", headers=headers)
            status, payload = result
            return Response(
                dumps(payload), status_code=status, media_type="application/json", headers=headers
            )

        return handle

    routes = []
    for service_name, operations in (("bedrock", tuple(_CONTROL_OPS)), ("bedrock-runtime", _RUNTIME_OPS)):
        for operation, method, path in _shapes.routes(service_name):
            if operation in operations:
                routes.append(Route(path, endpoint(service_name, operation), methods=[method]))

    routes.append(Route("/", _sagemaker_endpoint(service, control_threads), methods=["POST"]))

    async def not_found(request: Request, exc: Exception) -> Response:
        message = f"No operation of the local Bedrock matches {request.method} {request.url.path}."
        return error(ServiceError("UnknownOperationException", message), str(uuid.uuid4()))

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})


def _sagemaker_endpoint(service: LocalBedrock, control_threads: Any) -> Callable[[Any], Any]:
    """SageMaker's JSON protocol: POST / with ``X-Amz-Target: SageMaker.<Operation>``."""
    import anyio
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from bedrock_ft.local import _shapes

    async def sagemaker(request: Request) -> Response:
        """SageMaker's JSON protocol: POST / with ``X-Amz-Target: SageMaker.<Operation>``."""
        request_id = str(uuid.uuid4())
        target = request.headers.get("x-amz-target", "")
        operation = target.partition(".")[2]
        if not target.startswith("SageMaker.") or operation not in _SAGEMAKER_OPS:
            return json_error("UnknownOperationException", f"{target or 'POST /'} is not served here.", 400)
        body = await request.body()

        def run() -> Any:
            try:
                params = json.loads(body or b"{}")
            except ValueError:
                raise ServiceError("SerializationException", "The request body is not JSON.") from None
            if not isinstance(params, dict):
                raise ServiceError("SerializationException", "The request body is not a JSON object.")
            _shapes.validate_input("sagemaker", operation, _sm_timestamps(operation, params))
            return service.call(operation, params)

        try:
            result = await anyio.to_thread.run_sync(run, limiter=control_threads)
        except _shapes.ShapeValidationError as exc:
            return json_error("ValidationException", str(exc), 400)
        except ServiceError as exc:
            log.info("%s -> %s: %s", operation, exc.code, exc.message)
            return json_error(exc.code, exc.message, 400)
        except Exception as exc:
            log.exception("%s failed", operation)
            return json_error("InternalFailure", f"Internal error in the local SageMaker: {exc}", 500)
        return Response(dumps(result), media_type="application/x-amz-json-1.1",
                        headers={"x-amzn-RequestId": request_id})  # fmt: skip

    def json_error(code: str, message: str, status: int) -> Response:
        return JSONResponse({"__type": code, "message": message}, status_code=status,
                            headers={"x-amzn-RequestId": str(uuid.uuid4())})  # fmt: skip

    return sagemaker


def _sm_timestamps(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """The JSON protocol sends timestamps as epoch seconds; the validator wants datetimes."""
    from datetime import datetime, timezone

    from bedrock_ft._shapes import operation_model

    shape = operation_model("sagemaker", operation).input_shape
    out = dict(params)
    for name, member in shape.members.items():
        if member.type_name == "timestamp" and isinstance(out.get(name), (int, float)):
            out[name] = datetime.fromtimestamp(out[name], tz=timezone.utc)
    return out


# The modeled errors of Bedrock's response streams (botocore's ResponseStream and
# ConverseStreamOutput members), by the PascalCase code of the same error outside a stream.
_STREAM_ERRORS = {
    code: code[:1].lower() + code[1:]
    for code in (
        "ThrottlingException", "ValidationException", "ModelTimeoutException", "ServiceUnavailableException",
        "InternalServerException", "ModelStreamErrorException",
    )
}  # fmt: skip


def _framed(items: Iterator[Any], encode: Callable[[Any], bytes]) -> Iterator[bytes]:
    """Each item as an event; an error mid-stream as the stream's own exception event (a ServiceError
    with a code the stream models, such as throttling, as that member; anything else as
    modelStreamErrorException, the model's failure)."""
    from bedrock_ft.local import _eventstream

    try:
        for item in items:
            yield encode(item)
    except ServiceError as exc:
        kind = _STREAM_ERRORS.get(exc.code, "modelStreamErrorException")
        body: dict[str, Any] = {"message": exc.message}
        if kind == "modelStreamErrorException":
            body["originalStatusCode"] = exc.status
        yield _eventstream.encode_exception(kind, json.dumps(body).encode())
    except Exception as exc:
        log.exception("stream failed")
        payload = json.dumps({"message": f"{type(exc).__name__}: {exc}", "originalStatusCode": 500})
        yield _eventstream.encode_exception("modelStreamErrorException", payload.encode())


KEEP_ALIVE_SECONDS = 300


class BedrockServer:
    """The local Bedrock on uvicorn, in a background thread."""

    def __init__(
        self,
        config: LocalBedrockConfig | None = None,
        *,
        s3_endpoint_url: str | None = None,
        engine: InferenceEngine | None = None,
    ) -> None:
        self.config = config or LocalBedrockConfig()
        self.service = LocalBedrock(self.config, s3_endpoint_url=s3_endpoint_url, engine=engine)
        self._closed = False
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> str:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # releases the data directory's lock and the service's threads
            raise

    def _start(self, timeout: float) -> str:
        import uvicorn

        config = uvicorn.Config(
            build_app(self.service),
            host=self.config.host,
            port=self.config.port,
            log_level="debug" if self.config.debug else "warning",
            access_log=self.config.debug,
            lifespan="off",
            # botocore's pool reuses an idle connection however long it waited; uvicorn's default closes
            # it after 5 s, and a request sent on it in that instant fails ("Connection was closed
            # before we received a valid response"). Keep idle connections as long as AWS's endpoints do.
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="local-bedrock", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the local Bedrock did not start on {self.config.host}:{self.config.port} "
                    "(is the port in use?)"
                )
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        self.url = f"http://{host}:{port}"
        return self.url

    def _serve(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn exits when it can't bind; start() reports it
            log.debug("uvicorn exited", exc_info=True)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not self._closed:
            self._closed = True
            self.service.close()
