"""The remote engine: an OPA server over its REST data API (design.md section 6).

``POST {url}/v1/data/mlgate/decision?provenance=true`` with ``{"input": ...}``, through one
pooled ``requests`` session. OPA's documented answers (docs/content/rest-api.md, "Get a Document
(with Input)") and what each becomes:

- 200 with ``result``: the decision value (``decide()`` still judges it);
- 200 without ``result``: the document is undefined, hence :class:`UndefinedDecision` (deny);
- 400 / 401 / 404 / 500 with an error body ``{"code", "message", ...}``: :class:`EngineError`
  naming status, code and message (deny);
- anything else (another status, a body that is not a JSON object, a redirect, a body over the
  size cap, a transport or TLS error, the deadline): :class:`EngineError` with the reason (deny).

``decision_id`` (present when OPA's decision logging is on) is returned with the value and kept
in mlgate's audit record, also on an undefined or error answer, so the two logs can be joined.

With ``provenance=true`` OPA reports the revisions of the bundles it serves. One of them must be
the expected revision: ``OpaSettings.expected_revision`` (``--opa-bundle-revision``) when set, else
the local policy's own revision (:attr:`~mlgate.policy.PolicySet.bundle_revision`, which
``mlgate policy bundle`` writes into the ``.manifest``; a signed bundle given as ``--policy`` with
``--bundle-key`` pins the revision its signature covers). An answer naming no bundle (OPA
running loose policy files, or not reporting provenance) or only other revisions is refused with
the reason (a deny): the recorded policy revision digests the expected revision, so a decision
is never recorded under a policy OPA did not run.

The deadline is hard: the exchange runs on a worker thread and the caller stops waiting at the
deadline (requests' own timeouts bound each socket operation only, and a server dripping header
bytes could otherwise hold the call for ever). The late worker is abandoned; it ends at its own
socket timeout. ``requests`` is imported when an engine is built, not when the CLI starts.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlgate.errors import EngineError, InputError, PolicyError, UndefinedDecision

log = logging.getLogger("mlgate.policy.engine.opa")

DECISION_ENDPOINT = "/v1/data/mlgate/decision"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
DEFAULT_TIMEOUT_S = 5.0  # shorter than the webhook's default 10 s: the apiserver must get an answer
MAX_TOKEN_BYTES = 64 * 1024


def read_token_file(path: Path) -> str:
    """The bearer token in ``path`` (e.g. a mounted Secret), without surrounding whitespace;
    InputError naming the file when it cannot be one."""
    from mlgate.safeio import decode_text, display, read_bytes

    name = display(path)
    token = decode_text(read_bytes(Path(path), limit=MAX_TOKEN_BYTES), name).strip()
    if not token or any(c in token for c in "\r\n"):
        raise InputError("must hold the bearer token on one non-empty line", file=name)
    return token


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a rewritten or swapped file (a rotated Secret swaps a symlink): inode, mtime, size."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class OpaSettings:
    """How to reach OPA. ``token``: sent as ``Authorization: Bearer``; ``token_file``: where
    ``token`` was read from, re-read when the file changes (a rotated Secret) so a long-running
    webhook follows the rotation without a restart; ``ca_file``: the CA that
    signed OPA's server certificate (default: the system store); ``client_cert`` and
    ``client_key``: mTLS; ``timeout_s``: the hard deadline per decision (default: the gate's
    ``--timeout``); ``pool_size``: pooled connections kept open."""

    url: str
    token: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_s: float | None = None
    pool_size: int = 8
    expected_revision: str | None = None  # the bundle revision OPA must serve (default: the local policy's)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validated(settings: OpaSettings) -> tuple[str, str]:
    """(base URL without trailing slash, host); PolicyError for a URL that cannot be right."""
    parts = urlsplit(settings.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PolicyError(f"--opa-url must be an http:// or https:// URL with a host, got {settings.url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise PolicyError("--opa-url must not carry a query, fragment or credentials (use --opa-token)")
    if (settings.token or settings.token_file) and parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise PolicyError(f"refusing to send the OPA bearer token in clear text to {parts.hostname}; use https:// (or a loopback address)")
    if (settings.client_cert is None) != (settings.client_key is None):
        raise PolicyError("mTLS needs both --opa-client-cert and --opa-client-key")
    if parts.scheme == "http" and (settings.ca_file or settings.client_cert):
        raise PolicyError("TLS options (--opa-ca, --opa-client-cert/--opa-client-key) need an https:// --opa-url")
    for label, path in (("--opa-ca", settings.ca_file), ("--opa-client-cert", settings.client_cert), ("--opa-client-key", settings.client_key)):
        if path is not None and not Path(path).is_file():
            raise PolicyError(f"{label}: file not found: {path}")
    return settings.url.rstrip("/"), parts.hostname


def _opa_error(status: int, body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("code"), str):
        message = " ".join(str(doc.get("message", "")).split())[:300]
        return f"OPA answered HTTP {status} {doc['code']}: {message}"
    return f"OPA answered HTTP {status} without an OPA error body"


def _with_id(exc: PolicyError, decision_id: str | None) -> PolicyError:
    exc.engine_decision_id = decision_id  # type: ignore[attr-defined]
    return exc


class OpaEngine:
    name = "opa"

    def __init__(self, settings: OpaSettings, *, timeout_s: float = DEFAULT_TIMEOUT_S, policy: Any = None):
        import requests
        from requests.adapters import HTTPAdapter

        self.settings = settings
        base, _host = _validated(settings)
        self.url = base + DECISION_ENDPOINT
        self.version = f"REST v1 at {base}"
        self.timeout_s = float(settings.timeout_s or timeout_s or DEFAULT_TIMEOUT_S)
        self.expected_revision = settings.expected_revision or getattr(policy, "bundle_revision", None) or None
        if self.expected_revision is None:
            raise PolicyError("--engine opa needs the bundle revision OPA must serve: --opa-bundle-revision, or a local policy to take it from")
        self._requests = requests
        session = requests.Session()
        session.trust_env = False  # no proxy or netrc from the environment between mlgate and OPA
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, settings.pool_size), max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = str(settings.ca_file) if settings.ca_file else True
        if settings.client_cert is not None:
            session.cert = (str(settings.client_cert), str(settings.client_key))
        session.headers.update({"Content-Type": "application/json", "Accept": "application/json", "Accept-Encoding": "identity"})
        self._token = settings.token
        self._token_file = Path(settings.token_file) if settings.token_file else None
        self._token_stamp = _stamp(self._token_file) if self._token_file else None
        self.token_reloads = 0
        if self._token is None and self._token_file is not None:
            self._reload_token(self._token_stamp)
        self._session = session

    def close(self) -> None:
        self._session.close()

    # --- the protocol ------------------------------------------------------------------------
    takes_input_json = True  # the gate's canonical serialisation is sent as it is

    def decide(self, input_doc: dict[str, Any], input_json: bytes | None = None) -> Any:
        return self.decide_with_id(input_doc, input_json)[0]

    def decide_with_id(self, input_doc: dict[str, Any], input_json: bytes | None = None) -> tuple[Any, str | None]:
        if input_json is None:
            input_json = json.dumps(input_doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        body = b'{"input":' + input_json + b"}"
        headers = self._auth_headers()
        done: queue.SimpleQueue = queue.SimpleQueue()

        def work() -> None:
            try:
                done.put((True, self._exchange(body, headers)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                done.put((False, exc))

        # A daemon thread per exchange: past the deadline it is abandoned (a server dripping bytes
        # keeps it in a socket read), and a daemon thread never holds up the process's exit,
        # where a thread pool's workers are joined at interpreter shutdown.
        threading.Thread(target=work, name="mlgate-opa", daemon=True).start()
        try:
            ok, value = done.get(timeout=self.timeout_s)
        except queue.Empty:
            raise EngineError(f"OPA at {self.url} did not answer within the {self.timeout_s:.3g} s deadline") from None
        if not ok:
            raise value
        return self._interpret(*value)

    # --- the bearer token -------------------------------------------------------------------------
    def _auth_headers(self) -> dict[str, str]:
        """The Authorization header for this decision. With a token file, a changed file (one
        stat per decision) is read again first; a file that cannot be read or holds no token
        (mid-rotation, removed) keeps the last good token, and OPA judges whether it still holds."""
        if self._token_file is not None:
            stamp = _stamp(self._token_file)
            if stamp is not None and stamp != self._token_stamp:
                self._reload_token(stamp)
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _reload_token(self, stamp: tuple[int, int, int] | None) -> None:
        try:
            token = read_token_file(self._token_file)
        except InputError as exc:
            log.warning("mlgate: OPA token file not re-read, keeping the previous token: %s", exc.diagnostics())
            return  # the stamp is not taken: the next decision tries again
        if self._token is not None and token != self._token:
            self.token_reloads += 1
            log.info("mlgate: re-read the OPA bearer token from %s", self._token_file)
        self._token, self._token_stamp = token, stamp

    # --- one HTTP exchange (worker thread) ------------------------------------------------------
    def _exchange(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        requests = self._requests
        try:
            with self._session.post(self.url, params={"provenance": "true"}, data=body, headers=headers, timeout=(self.timeout_s, self.timeout_s),
                                    allow_redirects=False, stream=True) as response:
                chunks, size = [], 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise EngineError(f"OPA's answer is larger than {MAX_RESPONSE_BYTES // (1024 * 1024)} MiB; refused")
                    chunks.append(chunk)
                return response.status_code, b"".join(chunks)
        except requests.exceptions.SSLError as exc:
            raise EngineError(f"TLS with OPA at {self.url} failed: {_reason(exc)}") from None
        except requests.exceptions.Timeout:
            raise EngineError(f"OPA at {self.url} did not answer within the {self.timeout_s:.3g} s deadline") from None
        except requests.exceptions.ConnectionError as exc:
            raise EngineError(f"cannot reach OPA at {self.url}: {_reason(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise EngineError(f"request to OPA at {self.url} failed: {_reason(exc)}") from None

    def _interpret(self, status: int, payload: bytes) -> tuple[Any, str | None]:
        if status != 200:
            decision_id = None
            try:
                doc = json.loads(payload)
                decision_id = doc.get("decision_id") if isinstance(doc, dict) and isinstance(doc.get("decision_id"), str) else None
            except ValueError:
                pass
            raise _with_id(EngineError(_opa_error(status, payload)), decision_id)
        try:
            doc = json.loads(payload)
        except ValueError:
            raise EngineError("OPA answered HTTP 200 with a body that is not JSON") from None
        if not isinstance(doc, dict):
            raise EngineError(f"OPA answered HTTP 200 with a JSON {type(doc).__name__}, expected an object")
        decision_id = doc.get("decision_id") if isinstance(doc.get("decision_id"), str) else None
        self._check_provenance(doc.get("provenance"), decision_id)
        if "result" not in doc:
            # OPA's documented undefined: 200 and no `result` key. Never an allow.
            raise _with_id(UndefinedDecision("data.mlgate.decision is undefined on the OPA server (no result in its answer)"), decision_id)
        return doc["result"], decision_id

    def _check_provenance(self, provenance: Any, decision_id: str | None) -> None:
        """Fail closed unless OPA says it serves a bundle with the expected revision."""
        bundles = provenance.get("bundles") if isinstance(provenance, dict) else None
        if not isinstance(bundles, dict) or not bundles:
            raise _with_id(EngineError(
                "OPA serves no bundle (its provenance names none), so which policy it ran cannot be told; expected bundle revision "
                f"{self.expected_revision[:16]}: build it with `mlgate policy bundle` and serve it as an OPA bundle"), decision_id)
        revisions = sorted(str(b.get("revision")) for b in bundles.values() if isinstance(b, dict))
        if self.expected_revision not in revisions:
            raise _with_id(EngineError(
                f"OPA serves bundle revision(s) {', '.join(r[:16] for r in revisions) or 'none'}, "
                f"not the expected revision {self.expected_revision[:16]}; build and deploy it with `mlgate policy bundle`"), decision_id)


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, on one line."""
    seen = exc
    while True:
        inner = getattr(seen, "reason", None) or (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
        if not isinstance(inner, BaseException) or inner is seen:
            break
        seen = inner
    text = " ".join(str(seen).split())
    return text[:300] or type(seen).__name__
