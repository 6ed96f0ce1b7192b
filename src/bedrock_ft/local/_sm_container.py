"""One local training job: the container's directory tree, its channels, its command, its outputs.

What a SageMaker training container gets, laid out under ``<job dir>/attempt-N/opt/ml``:

- ``input/config/{hyperparameters,inputdataconfig,resourceconfig}.json`` and ``input/data/<channel>/``,
  downloaded from the (local) S3 before the command starts;
- ``checkpoints/``, restored from ``CheckpointConfig.S3Uri`` and synced back while the job runs;
- ``model/``, uploaded when the command exits 0 (uncompressed with ``CompressionType: NONE``, else as
  ``model.tar.gz``); ``output/failure``, whose text becomes the ``FailureReason``.

The job's own command (``ContainerEntrypoint`` + ``ContainerArguments``) runs in a subprocess, with the
current Python environment standing in for the image: the image is recorded, never pulled. The
container path ``/opt/ml`` is mapped to the attempt's directory: in the command, in the environment,
and in the sagemaker SDK's own driver scripts (the ``sm_drivers`` channel), which name it literally.
``pip install`` inside the job checks the requirements against the current environment instead of
installing them. Output lines go to CloudWatch Logs (``/aws/sagemaker/TrainingJobs``, stream
``<job>/algo-1-<epoch>``), where the SDK's ``logs=True`` and bedrock-ft read them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.local._jobs import parse_s3_uri, safe_relative_key

if TYPE_CHECKING:
    from bedrock_ft.local._sagemaker import TrainingJobs

__all__ = ["JobRun"]

log = logging.getLogger("bedrock_ft.local")

CONTAINER_ROOT = "/opt/ml"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
_DRIVER_CHANNEL = "sm_drivers"
_TEXT_SUFFIXES = (".sh", ".py", ".json", ".txt", ".env", "")
_FAILURE_LIMIT = 1024  # FailureReason's length limit


class _Interrupted(Exception):
    """The attempt was ended by a simulated spot interruption."""


class JobRun(threading.Thread):
    """Runs one training job to its end: attempts (a spot interruption starts another), then outputs."""

    def __init__(self, jobs: TrainingJobs, job: dict[str, Any]) -> None:
        super().__init__(name=f"sagemaker-{job['TrainingJobName']}", daemon=True)
        self.jobs = jobs
        self.job = job
        self.name_ = job["TrainingJobName"]
        self.dir = jobs.job_dir(self.name_)
        self._stop = threading.Event()
        self._interrupt = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._tail: deque[str] = deque(maxlen=40)
        self._logs: Any = None
        self._stream = ""
        self._reclaimed = False

    # --- control -----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()
        self._terminate()

    def request_interrupt(self) -> None:
        self._interrupt.set()
        self._terminate()

    def _terminate(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)

    # --- the job -------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except _ChannelEmpty as exc:
            self._end("Failed", str(exc))
        except Exception as exc:  # the service's own failure: the job fails with it, the server lives
            log.exception("local training job %s failed", self.name_)
            self._end("Failed", f"InternalServerError: {type(exc).__name__}: {exc}")
        finally:
            self.jobs.finished(self.name_)

    def _run(self) -> None:
        started = time.time()
        self.job["TrainingStartTime"] = started
        attempt = 0
        while True:
            attempt += 1
            root = self.dir / f"attempt-{attempt}" / "opt" / "ml"
            try:
                code = self._attempt(root, attempt)
            except _Interrupted:
                self.jobs.transition(self.job, "Interrupted", "Training job interrupted (simulated spot "
                                     "reclaim); restarting it from its checkpoints")  # fmt: skip
                self._interrupt.clear()
                self.jobs.transition(self.job, "Restarting", "Restarting the training job")
                continue
            break
        self.job["TrainingEndTime"] = time.time()
        seconds = int(self.job["TrainingEndTime"] - started)
        self.job["TrainingTimeInSeconds"] = seconds
        self.job["BillableTimeInSeconds"] = seconds
        if self._stop.is_set():
            self._upload_model(root)
            reason = self.job.get("_stop_reason")
            self._end("Stopped", None, secondary=reason or "Stopped")
        elif code == 0:
            self.jobs.transition(self.job, "Uploading", "Uploading generated training model")
            self._upload_model(root)
            self._end("Completed", None)
        else:
            self._end("Failed", self._failure_reason(root, code))

    def _end(self, status: str, reason: str | None, *, secondary: str | None = None) -> None:
        self.job.pop("_stop_reason", None)
        if reason:
            self.job["FailureReason"] = reason[:_FAILURE_LIMIT]
        message = {
            "Completed": "Training job completed",
            "Failed": "Training job failed",
            "Stopped": "Training job stopped",
        }.get(status, status)
        if secondary == "MaxRuntimeExceeded":
            message = "Training job stopped: it ran longer than MaxRuntimeInSeconds"
        self.jobs.transition(self.job, secondary or status, message, status=status)

    def _attempt(self, root: Path, attempt: int) -> int:
        """Lay out the container, run the command, sync checkpoints; the command's exit status."""
        if root.exists():
            shutil.rmtree(root)
        for sub in ("input/config", "input/data", "model", "output/data", "checkpoints"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.jobs.transition(self.job, "Downloading", "Downloading input data")
        self._write_config(root)
        for channel in self.job.get("InputDataConfig") or []:
            self._download_channel(channel, root / "input" / "data" / channel["ChannelName"])
        checkpoints = self._checkpoint_dir(root)
        if self._checkpoint_uri:
            restored = self._sync_down(self._checkpoint_uri, checkpoints)
            if restored:
                log.info("training job %s: restored %d checkpoint files", self.name_, restored)
        if self._stop.is_set():
            return 1
        self.jobs.transition(self.job, "Training", "Training image download completed. Training in progress.")
        self._open_log(attempt)
        self._say(f"local SageMaker: image {self.job['AlgorithmSpecification'].get('TrainingImage')} "
                  f"(recorded, not pulled; this Python environment stands in for it)")  # fmt: skip
        argv = self._command(root)
        process = subprocess.Popen(
            argv,
            cwd=root,
            env=self._environment(root),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._process = process
        reader = threading.Thread(target=self._read_output, args=(process,), daemon=True)
        reader.start()
        sync_state: dict[str, tuple[int, int]] = {}
        limit = float(self.job["StoppingCondition"].get("MaxRuntimeInSeconds", 86400))
        deadline = time.monotonic() + limit
        while process.poll() is None:
            if self._interrupt.is_set() or self._stop.is_set():
                self._terminate()
            if time.monotonic() > deadline and not self._stop.is_set():
                self.job["_stop_reason"] = "MaxRuntimeExceeded"
                self._stop.set()
                self._terminate()
            self._sync_up(checkpoints, sync_state)
            self._maybe_reclaim(sync_state)
            self._wait(process, self.jobs.sync_interval)
        reader.join(timeout=10)
        self._flush_log()
        self._sync_up(checkpoints, sync_state)  # the last state, as SageMaker uploads it on exit
        self._process = None
        if self._interrupt.is_set() and not self._stop.is_set():
            raise _Interrupted
        return int(process.returncode)

    def _maybe_reclaim(self, synced: dict[str, tuple[int, int]]) -> None:
        """The rehearsal switch: reclaim a spot job once, after N complete checkpoints reached S3."""
        after = self.jobs.interrupt_after
        if after is None or self._reclaimed or not self.job.get("EnableManagedSpotTraining"):
            return
        complete = {key.split("/")[-2] for key in synced if key.endswith("/trainer_state.json")}
        if len(complete) >= after:
            self._reclaimed = True
            self.request_interrupt()

    @staticmethod
    def _wait(process: subprocess.Popen[bytes], seconds: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=seconds)

    # --- the container's view ----------------------------------------------------------------------

    def _map(self, value: str, root: Path) -> str:
        return value.replace(CONTAINER_ROOT, str(root))

    def _command(self, root: Path) -> list[str]:
        spec = self.job["AlgorithmSpecification"]
        entry = list(spec.get("ContainerEntrypoint") or [])
        arguments = list(spec.get("ContainerArguments") or [])
        if not entry:
            raise RuntimeError(
                "the local SageMaker runs jobs that name their command (ContainerEntrypoint), as "
                "sagemaker.modules.train.ModelTrainer's do; it can't run an image's built-in entrypoint"
            )
        return [self._map(part, root) for part in entry + arguments]

    def _environment(self, root: Path) -> dict[str, str]:
        env = dict(os.environ)
        for name in list(env):
            if name.startswith(("SM_", "BEDROCK_FT_LAUNCH")):
                env.pop(name)
        env.update({k: self._map(v, root) for k, v in (self.job.get("Environment") or {}).items()})
        shims = self._shims(root.parent / "bin")
        env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', '')}"
        channels = [c["ChannelName"] for c in self.job.get("InputDataConfig") or []]
        hps = self.job.get("HyperParameters") or {}
        resource = self.job.get("ResourceConfig") or {}
        env.update(
            {
                "TRAINING_JOB_NAME": self.name_,
                "TRAINING_JOB_ARN": self.job["TrainingJobArn"],
                "SM_MODEL_DIR": str(root / "model"),
                "SM_INPUT_DIR": str(root / "input"),
                "SM_INPUT_DATA_DIR": str(root / "input" / "data"),
                "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
                "SM_OUTPUT_DIR": str(root / "output"),
                "SM_OUTPUT_FAILURE": str(root / "output" / "failure"),
                "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
                "SM_CHANNELS": json.dumps(channels),
                "SM_HPS": json.dumps(hps),
                "SM_CURRENT_HOST": "algo-1",
                "SM_HOSTS": json.dumps(["algo-1"]),
                "SM_CURRENT_INSTANCE_TYPE": str(resource.get("InstanceType", "local")),
                "SM_NUM_GPUS": str(_visible_gpus()),
                "SM_NUM_CPUS": str(os.cpu_count() or 1),
            }
        )
        for channel in channels:
            env[f"SM_CHANNEL_{channel.upper()}"] = str(root / "input" / "data" / channel)
        for key, value in hps.items():
            env[f"SM_HP_{key.upper()}"] = value
        return env

    def _shims(self, directory: Path) -> Path:
        """``python``/``python3`` (this interpreter) and ``pip``/``pip3`` (a check of the requirements
        against this environment) first on the job's PATH."""
        directory.mkdir(parents=True, exist_ok=True)
        python = shlex.quote(sys.executable)  # a script, not a link: a venv is found from the path run
        scripts = {
            "python": f'#!/bin/sh\nexec {python} "$@"\n',
            "pip": f'#!/bin/sh\nexec {python} -m bedrock_ft.local._sm_pip "$@"\n',
        }
        scripts.update(python3=scripts["python"], pip3=scripts["pip"])
        for name, script in scripts.items():
            target = directory / name
            target.write_text(script)
            target.chmod(0o755)
        return directory

    def _write_config(self, root: Path) -> None:
        config = root / "input" / "config"
        resource = self.job.get("ResourceConfig") or {}
        instance = str(resource.get("InstanceType", "local"))
        (config / "hyperparameters.json").write_text(json.dumps(self.job.get("HyperParameters") or {}))
        channels = {
            c["ChannelName"]: {
                "TrainingInputMode": c.get("InputMode") or "File",
                "S3DistributionType": c.get("DataSource", {})
                .get("S3DataSource", {})
                .get("S3DataDistributionType", "FullyReplicated"),
                "RecordWrapperType": c.get("RecordWrapperType", "None"),
            }
            for c in self.job.get("InputDataConfig") or []
        }
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        (config / "resourceconfig.json").write_text(
            json.dumps(
                {
                    "current_host": "algo-1",
                    "current_instance_type": instance,
                    "current_group_name": "homogeneousCluster",
                    "hosts": ["algo-1"],
                    "instance_groups": [
                        {
                            "instance_group_name": "homogeneousCluster",
                            "instance_type": instance,
                            "hosts": ["algo-1"],
                        }
                    ],
                    "network_interface_name": "lo",
                }
            )
        )

    # --- S3 --------------------------------------------------------------------------------------------

    @property
    def _checkpoint_uri(self) -> str | None:
        return (self.job.get("CheckpointConfig") or {}).get("S3Uri")

    def _checkpoint_dir(self, root: Path) -> Path:
        local = (self.job.get("CheckpointConfig") or {}).get("LocalPath") or f"{CONTAINER_ROOT}/checkpoints"
        path = Path(self._map(local, root))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _download_channel(self, channel: dict[str, Any], target: Path) -> None:
        source = channel.get("DataSource", {}).get("S3DataSource")
        if source is None:
            raise RuntimeError(f"channel {channel['ChannelName']}: only S3 data sources are served locally")
        count = self._sync_down(source["S3Uri"], target)
        if count == 0:
            raise _ChannelEmpty(channel["ChannelName"], source["S3Uri"])
        if channel["ChannelName"] == _DRIVER_CHANNEL:  # the SDK's scripts name /opt/ml literally
            for path in target.rglob("*"):
                if path.is_file() and path.suffix in _TEXT_SUFFIXES:
                    text = path.read_text("utf-8", errors="surrogateescape")
                    if CONTAINER_ROOT in text:
                        path.write_text(self._map(text, target.parents[2]), "utf-8", errors="surrogateescape")

    def _sync_down(self, uri: str, target: Path) -> int:
        s3 = self.jobs.client("s3")
        bucket, prefix = parse_s3_uri(uri)
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith("/"):
                    continue
                relative = safe_relative_key(item["Key"], prefix)
                path = target.joinpath(*relative.parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(path))
                count += 1
        return count

    def _sync_up(self, directory: Path, state: dict[str, tuple[int, int]]) -> None:
        """Mirror ``directory`` to the checkpoint URI: new and changed files up, deleted ones removed."""
        uri = self._checkpoint_uri
        if not uri:
            return
        s3 = self.jobs.client("s3")
        bucket, prefix = parse_s3_uri(uri)
        seen: set[str] = set()
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            relative = path.relative_to(directory).as_posix()
            seen.add(relative)
            try:
                stat = path.stat()
            except FileNotFoundError:  # deleted while we looked (a rotated checkpoint)
                continue
            mark = (stat.st_size, stat.st_mtime_ns)
            if state.get(relative) == mark:
                continue
            try:
                s3.upload_file(str(path), bucket, prefix + relative)
            except FileNotFoundError:
                continue
            state[relative] = mark
        for relative in sorted(set(state) - seen):
            s3.delete_object(Bucket=bucket, Key=prefix + relative)
            state.pop(relative)

    def _upload_model(self, root: Path) -> None:
        output = self.job["OutputDataConfig"]
        bucket, prefix = parse_s3_uri(output["S3OutputPath"])
        base = f"{prefix}{self.name_}/output/"
        s3 = self.jobs.client("s3")
        model = root / "model"
        files = sorted(p for p in model.rglob("*") if p.is_file()) if model.is_dir() else []
        if output.get("CompressionType") == "NONE":
            for path in files:
                s3.upload_file(str(path), bucket, f"{base}model/{path.relative_to(model).as_posix()}")
            location = f"s3://{bucket}/{base}model/"
        else:
            archive = root.parent / "model.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                for path in files:
                    tar.add(path, arcname=path.relative_to(model).as_posix())
            s3.upload_file(str(archive), bucket, f"{base}model.tar.gz")
            location = f"s3://{bucket}/{base}model.tar.gz"
        self.job["ModelArtifacts"] = {"S3ModelArtifacts": location}
        self.jobs.save(self.job)

    # --- logs ------------------------------------------------------------------------------------------

    def _open_log(self, attempt: int) -> None:
        self._stream = f"{self.name_}/algo-1-{int(time.time())}-{attempt}"
        self._pending: list[dict[str, Any]] = []
        try:
            logs = self.jobs.client("logs")
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_group(logGroupName=LOG_GROUP)
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=self._stream)
            self._logs = logs
        except Exception:  # logs are a convenience; the job's own file keeps every line
            log.warning("training job %s: CloudWatch Logs unavailable; log kept in job.log", self.name_,
                        exc_info=True)  # fmt: skip
            self._logs = None

    def _say(self, line: str) -> None:
        self._tail.append(line)
        with (self.dir / "job.log").open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        if self._logs is not None:
            self._pending.append({"timestamp": int(time.time() * 1000), "message": line})
            if len(self._pending) >= 200:
                self._flush_log()

    def _flush_log(self) -> None:
        if self._logs is None or not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            self._logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=self._stream, logEvents=batch)
        except Exception:
            log.warning(
                "training job %s: could not write %d log lines", self.name_, len(batch), exc_info=True
            )

    def _read_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        last_flush = time.monotonic()
        for raw in process.stdout:
            for line in raw.decode("utf-8", errors="replace").rstrip("\n").split("\r"):
                if line.strip():
                    self._say(line.rstrip())
            if time.monotonic() - last_flush > 0.5:
                self._flush_log()
                last_flush = time.monotonic()

    def _failure_reason(self, root: Path, code: int) -> str:
        failure = root / "output" / "failure"
        text = failure.read_text("utf-8", errors="replace").strip() if failure.is_file() else ""
        if not text:
            tail = "\n".join(list(self._tail)[-5:])
            text = f"ExecuteUserScriptError: the command exited with {code}\n{tail}"
        return f"AlgorithmError: {text}, exit code: {code}"


class _ChannelEmpty(RuntimeError):
    def __init__(self, channel: str, uri: str) -> None:
        super().__init__(f"ClientError: no objects at {uri} for channel {channel!r}")


def _visible_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    return len(list(Path("/dev").glob("nvidia[0-9]*")))
