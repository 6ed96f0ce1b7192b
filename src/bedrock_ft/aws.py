"""boto3 clients from one :class:`AwsConfig`.

bedrock-ft follows boto3's own conventions, so pointing it at another endpoint (the local stack, a VPC
endpoint) needs no special code path: ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>`` (for example
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``), profiles and ``AWS_REGION`` all work as they do in boto3.
An endpoint set in :attr:`AwsConfig.endpoint_urls` wins over the environment.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from bedrock_ft.config import BaseConfig
from bedrock_ft.errors import translate_client_errors

if TYPE_CHECKING:
    import boto3

__all__ = ["AwsConfig", "env_var_for_service", "resolve_endpoint", "split_s3_uri"]


@functools.cache
def split_s3_uri(uri: str, *, folder: bool = False) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``. With ``folder`` the key is a prefix that names a
    folder: it ends in '/' (``"a/b/"``), or is "" for a whole bucket, so ``s3://bucket/models/m`` never
    also means ``models/m2/``."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not folder:
        return bucket, key
    key = key.strip("/")
    return bucket, key + "/" if key else ""


def env_var_for_service(service: str) -> str:
    """The boto3 environment variable that overrides a service's endpoint.

    boto3 names it after the service's ``serviceId``, not the client name: ``bedrock-runtime`` reads
    ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, ``logs`` reads ``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS``.
    """
    name = service
    try:
        import botocore.session

        name = str(botocore.session.get_session().get_service_model(service).service_id)
    except Exception:  # an unknown service: fall back to its client name
        pass
    return "AWS_ENDPOINT_URL_" + name.upper().replace("-", "_").replace(" ", "_")


class AwsConfig(BaseConfig):
    """Where and how to reach AWS."""

    region: str | None = Field(
        default=None,
        description="AWS region, e.g. us-east-1. Default: AWS_REGION, then boto3's own resolution "
        "(AWS_DEFAULT_REGION, the profile's region).",
    )
    profile: str | None = Field(default=None, description="Named profile from the AWS config files.")
    endpoint_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Per-service endpoint overrides, e.g. {'bedrock-runtime': 'http://127.0.0.1:4000'}. "
        "Default: AWS_ENDPOINT_URL_<SERVICE> or AWS_ENDPOINT_URL, then AWS's own endpoint.",
    )
    retry_mode: Literal["standard", "adaptive", "legacy"] = Field(
        default="standard", description="botocore transport retry mode."
    )
    max_attempts: int = Field(
        default=5, ge=1, le=20, description="Total attempts per request, transport retries included."
    )
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for a connection.")
    read_timeout: float = Field(
        default=120.0, gt=0, description="Seconds to wait for a response (model invocations can be slow)."
    )

    hash_exclude = frozenset(
        {"profile", "endpoint_urls", "retry_mode", "max_attempts", "connect_timeout", "read_timeout"}
    )

    @field_validator("endpoint_urls")
    @classmethod
    def _check_urls(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{k}={v!r}" for k, v in value.items() if not v.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"endpoint URLs must start with http:// or https://: {', '.join(bad)}")
        return value

    # --- clients ---------------------------------------------------------------------------------

    def session(self) -> boto3.session.Session:
        """A new boto3 session for this config's region and profile (sessions aren't thread-safe,
        so each caller gets its own; the clients from :meth:`client` share a cached one)."""
        return _new_session(self)

    def sdk_session(self) -> boto3.session.Session:
        """A boto3 session for SDKs that make their own clients from it (the sagemaker SDK): its
        ``client()`` and ``resource()`` also apply this config's ``endpoint_urls``, which a plain session
        doesn't know (the ``AWS_ENDPOINT_URL_*`` variables it reads itself)."""
        return _routed_session(self)

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service``, with this config's region, endpoint and retry settings.

        Clients are thread-safe and cached per config and service.
        """
        return _cache.client(self, service, kwargs)

    def endpoint_for(self, service: str) -> str | None:
        return resolve_endpoint(service, self)

    def resolved_region(self) -> str | None:
        return _cache.region(self)


def resolve_endpoint(service: str, config: AwsConfig | None = None) -> str | None:
    """The endpoint a client for ``service`` will use, or None for AWS's default.

    Order: ``config.endpoint_urls[service]``, ``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_ENDPOINT_URL``.
    As in boto3, ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`` turns the environment variables off.
    """
    if config is not None and service in config.endpoint_urls:
        return config.endpoint_urls[service]
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    return os.environ.get(env_var_for_service(service)) or os.environ.get("AWS_ENDPOINT_URL") or None


_CREDENTIAL_ENV = (
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def _env_key() -> tuple[str | None, ...]:
    return tuple(os.environ.get(k) for k in _CREDENTIAL_ENV)


class _BotoCache:
    """Sessions and clients, keyed by everything that shapes them: the config, and the endpoint and
    credential variables in the environment, so changing those (as a local stack does) gives fresh
    ones instead of stale credentials. One lock guards both: boto3 sessions are not thread-safe;
    the clients they make are."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[Any, ...], Any] = {}
        self._clients: dict[tuple[Any, ...], Any] = {}

    def region(self, config: AwsConfig) -> str | None:
        with self._lock:
            return self._session_locked(config).region_name  # type: ignore[no-any-return]

    def _session_locked(self, config: AwsConfig) -> Any:
        key = (config.region, config.profile, _env_key())
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _new_session(config)
        return session

    def client(self, config: AwsConfig, service: str, kwargs: dict[str, Any]) -> Any:
        from botocore.config import Config as BotoConfig

        kwargs = dict(kwargs)
        # Only an explicit endpoint is passed; boto3 resolves AWS_ENDPOINT_URL_* itself (with the
        # right variable names). The resolved one is part of the key, so a changed variable gives a
        # fresh client.
        explicit = kwargs.pop("endpoint_url", None) or config.endpoint_urls.get(service)
        extra = kwargs.pop("config", None)
        key = (
            config.model_dump_json(),
            service,
            explicit or resolve_endpoint(service, config),
            _env_key(),
            _botocore_config_key(extra),
            repr(sorted(kwargs.items())),
        )
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                boto_config = BotoConfig(
                    retries={"mode": config.retry_mode, "total_max_attempts": config.max_attempts},
                    connect_timeout=config.connect_timeout,
                    read_timeout=config.read_timeout,
                    max_pool_connections=32,
                )
                if extra is not None:
                    boto_config = boto_config.merge(extra)  # the caller's settings win
                session = self._session_locked(config)
                with translate_client_errors():
                    client = session.client(service, endpoint_url=explicit, config=boto_config, **kwargs)
                self._clients[key] = client
            return client

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._clients.clear()


def _new_session(config: AwsConfig) -> Any:
    import boto3

    # The AWS SDKs read AWS_REGION; boto3 sessions only read AWS_DEFAULT_REGION.
    region = config.region or os.environ.get("AWS_REGION") or None
    with translate_client_errors():
        return boto3.session.Session(region_name=region, profile_name=config.profile)


def _routed_session(config: AwsConfig) -> Any:
    import boto3

    endpoints = dict(config.endpoint_urls)

    class RoutedSession(boto3.session.Session):  # type: ignore[misc]
        def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
            if service_name in endpoints and not kwargs.get("endpoint_url"):
                kwargs["endpoint_url"] = endpoints[service_name]
            return super().client(service_name, *args, **kwargs)

        def resource(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
            if service_name in endpoints and not kwargs.get("endpoint_url"):
                kwargs["endpoint_url"] = endpoints[service_name]
            return super().resource(service_name, *args, **kwargs)

    region = config.region or os.environ.get("AWS_REGION") or None
    with translate_client_errors():
        return RoutedSession(region_name=region, profile_name=config.profile)


def _botocore_config_key(extra: Any) -> Any:
    """A botocore Config by value (it has no __repr__ of its own, and ids get reused)."""
    if extra is None:
        return None
    options = getattr(extra, "_user_provided_options", None)
    return repr(sorted((options if isinstance(options, dict) else vars(extra)).items()))


_cache = _BotoCache()


def clear_client_cache() -> None:
    """Forget cached sessions and clients."""
    _cache.clear()
