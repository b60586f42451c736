"""A small client for the MLflow tracking server's REST API (``/api/2.0/mlflow/...``).

mlgate does not import the ``mlflow`` package: it talks to the server with ``requests``, with a
hard timeout, and turns every expected failure (unreachable server, unknown run or model
version, an answer that is not MLflow's JSON) into :class:`MlflowError`, one line naming the
server and the object. Credentials come from MLflow's own variables (``MLFLOW_TRACKING_TOKEN``,
or ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``) and never reach a record: the
tracking URI is recorded without its user-info part.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import quote

from mlgate.progress import Progress
from mlgate.errors import MlgateError
from mlgate.provenance.gitinfo import strip_credentials

TIMEOUT_S = 10.0
#: One artifact file may be at most this large, and one release bundle at most this many files.
MAX_ARTIFACT_BYTES = 4 * 1024 * 1024 * 1024
MAX_ARTIFACT_FILES = 10_000
MODEL_URI = re.compile(r"^models:/(?P<name>[^@/][^@]*?)(?:/(?P<version>[0-9]+)|@(?P<alias>[A-Za-z0-9_-]+))$")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class MlflowError(MlgateError):
    """The MLflow tracking server could not be reached or did not have what was asked for."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str | None
    alias: str | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version else f"models:/{self.name}@{self.alias}"


def parse_model_uri(uri: str) -> ModelRef:
    match = MODEL_URI.match(uri.strip())
    if not match:
        raise MlflowError(f"expected models:/NAME/VERSION or models:/NAME@ALIAS, got {uri!r}", field="model")
    return ModelRef(match["name"], match["version"], match["alias"])


def tracking_uri(given: str | None = None) -> str:
    uri = given or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise MlflowError("no MLflow tracking server: pass --tracking-uri or set MLFLOW_TRACKING_URI", field="tracking_uri")
    if not uri.startswith(("http://", "https://")):
        raise MlflowError(
            f"mlgate reads MLflow over its REST API; expected an http(s):// tracking URI, got {strip_credentials(uri)!r}",
            field="tracking_uri",
        )
    return uri.rstrip("/")


class MlflowClient:
    def __init__(self, uri: str | None = None, *, timeout_s: float = TIMEOUT_S):
        import requests  # lazy: not on `mlgate --help`

        self.uri = tracking_uri(uri)
        self.shown = strip_credentials(self.uri) or self.uri
        self.timeout_s = timeout_s
        self._requests = requests
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies from the environment: the server is named exactly
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif user and password:
            self.session.auth = (user, password)

    # ------------------------------------------------------------------ transport
    def _request(self, method: str, path: str, what: str, **kwargs: Any):
        url = f"{self.uri}{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout_s, allow_redirects=False, **kwargs)
        except self._requests.Timeout:
            raise MlflowError(f"MLflow tracking server {self.shown} did not answer within {self.timeout_s:g} s ({what})") from None
        except self._requests.ConnectionError as exc:
            found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(exc))
            reason = found.group(0) if found else type(exc).__name__
            raise MlflowError(f"MLflow tracking server {self.shown} unreachable ({what}): {reason}") from None
        except self._requests.RequestException as exc:
            raise MlflowError(f"MLflow request to {self.shown} failed ({what}): {exc}") from None
        return response

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, what, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        message = body.get("message") if isinstance(body, dict) and isinstance(body.get("message"), str) else None
        # MLflow answers an unknown alias with 400 INVALID_PARAMETER_VALUE "... not found"
        if (response.status_code == 404 or (isinstance(body, dict) and body.get("error_code") == "RESOURCE_DOES_NOT_EXIST")
                or (response.status_code == 400 and message and "not found" in message.lower())):
            raise MlflowError(f"{what} not found on {self.shown}" + (f": {message}" if message else ""))
        if response.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else response.text[:160]
            raise MlflowError(f"MLflow tracking server {self.shown} answered HTTP {response.status_code} for {what}: {' '.join(str(message).split())[:200]}")
        if not isinstance(body, dict):
            raise MlflowError(f"MLflow tracking server {self.shown} answered {what} with something that is not a JSON object")
        return body

    # ------------------------------------------------------------------ tracking
    def get_run(self, run_id: str) -> dict[str, Any]:
        if not RUN_ID.match(run_id or ""):
            raise MlflowError(f"expected a 32-character hex MLflow run id, got {run_id!r}", field="run_id")
        run = self._json("GET", "/api/2.0/mlflow/runs/get", f"run {run_id}", params={"run_id": run_id}).get("run")
        if not isinstance(run, dict) or not isinstance(run.get("info"), dict):
            raise MlflowError(f"MLflow answered run {run_id} without run.info")
        return run

    def get_model_version(self, ref: ModelRef) -> dict[str, Any]:
        if ref.version is not None:
            body = self._json("GET", "/api/2.0/mlflow/model-versions/get", f"model version {ref.uri}",
                              params={"name": ref.name, "version": ref.version})
        else:
            body = self._json("GET", "/api/2.0/mlflow/registered-models/alias", f"model alias {ref.uri}",
                              params={"name": ref.name, "alias": ref.alias})
        mv = body.get("model_version")
        if not isinstance(mv, dict) or not isinstance(mv.get("version"), str):
            raise MlflowError(f"MLflow answered {ref.uri} without a model_version")
        return mv

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._json("POST", "/api/2.0/mlflow/model-versions/set-tag", f"tag of model version models:/{name}/{version}",
                   json={"name": name, "version": version, "key": key, "value": value})

    # ------------------------------------------------------------------ artifacts
    def list_artifacts(self, run_id: str, path: str) -> Iterator[dict[str, Any]]:
        """Every file under ``path`` of the run's artifacts, recursively (path, file_size)."""
        pending, count = [path], 0
        while pending:
            current = pending.pop()
            body = self._json("GET", "/api/2.0/mlflow/artifacts/list", f"artifacts {current!r} of run {run_id}",
                              params={"run_id": run_id, "path": current})
            for entry in body.get("files", []) or []:
                if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                    raise MlflowError(f"MLflow listed an artifact of run {run_id} without a path")
                if entry.get("is_dir"):
                    pending.append(entry["path"])
                    continue
                count += 1
                if count > MAX_ARTIFACT_FILES:
                    raise MlflowError(f"run {run_id} has more than {MAX_ARTIFACT_FILES} artifact files under {path!r}")
                yield entry

    def download_artifact(self, run_id: str, path: str, out) -> int:
        """Stream one artifact file into the binary file ``out``; returns its size."""
        response = self._request("GET", "/get-artifact", f"artifact {path!r} of run {run_id}",
                                 params={"path": path, "run_uuid": run_id}, stream=True)
        with response:
            if response.status_code >= 400:
                raise MlflowError(f"MLflow tracking server {self.shown} answered HTTP {response.status_code} for artifact {path!r} of run {run_id}")
            size = 0
            try:
                total = int(response.headers.get("content-length") or 0)
            except ValueError:
                total = 0
            progress = Progress(f"downloading {path}", total)  # silent unless large and someone listens
            for chunk in response.iter_content(1 << 20):
                size += len(chunk)
                if size > MAX_ARTIFACT_BYTES:
                    raise MlflowError(f"artifact {path!r} of run {run_id} is larger than {MAX_ARTIFACT_BYTES >> 30} GiB")
                out.write(chunk)
                progress.advance(len(chunk))
        return size

    def upload_artifact(self, artifact_uri: str, rel: str, data) -> None:
        """Upload one file under a run's ``mlflow-artifacts:/`` root (the server's artifact proxy)."""
        if not artifact_uri.startswith("mlflow-artifacts:"):
            raise MlflowError(
                f"the run's artifact root {artifact_uri!r} is not served by the tracking server (mlflow-artifacts:/); "
                "start the server with artifact serving (the default) to publish through it"
            )
        rest = artifact_uri[len("mlflow-artifacts:"):]
        if rest.startswith("//"):  # mlflow-artifacts://host:port/path: the path is what the proxy serves
            rest = rest[2:].partition("/")[2]
        base = rest.strip("/")
        path = quote(f"{base}/{rel}")
        response = self._request("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}", f"upload of {rel!r}", data=data)
        if response.status_code >= 400:
            raise MlflowError(f"MLflow tracking server {self.shown} refused the upload of {rel!r}: HTTP {response.status_code}")


def run_facts(run: dict[str, Any]) -> dict[str, Any]:
    """The provenance record of one MLflow run: id, experiment, status, times, params, metrics, git commit."""
    info = run.get("info") or {}
    data = run.get("data") or {}

    def pairs(key: str) -> dict[str, Any]:
        out = {}
        for item in data.get(key) or []:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                out[item["key"]] = item.get("value")
        return out

    tags = pairs("tags")
    return {
        "id": info.get("run_id") or info.get("run_uuid"),
        "name": info.get("run_name"),
        "experiment_id": info.get("experiment_id"),
        "status": info.get("status"),
        "start_time_ms": info.get("start_time"),
        "end_time_ms": info.get("end_time"),
        "artifact_uri": info.get("artifact_uri"),
        "params": {k: str(v) for k, v in sorted(pairs("params").items())},
        "metrics": {k: v for k, v in sorted(pairs("metrics").items()) if isinstance(v, (int, float)) and not isinstance(v, bool)},
        "git_commit": tags.get("mlflow.source.git.commit"),
        "source_name": tags.get("mlflow.source.name"),
        "user": tags.get("mlflow.user") or info.get("user_id"),
    }


def model_version_facts(mv: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": mv.get("name"),
        "version": mv.get("version"),
        "aliases": sorted(a for a in mv.get("aliases") or [] if isinstance(a, str)),
        "run_id": mv.get("run_id") or None,
        "source": mv.get("source"),
        "status": mv.get("status"),
        "creation_timestamp_ms": mv.get("creation_timestamp"),
    }
