"""Policy evaluation under a hard deadline, for in-process engines that cannot be interrupted.

An embedded engine (regorus, rego-cpp) evaluates in native code and holds the GIL, so neither a
thread nor a signal handler can stop it in time. :func:`evaluate_with_deadline` forks: the child
evaluates and writes the result to a pipe; the parent waits at most ``timeout_s`` and kills the
child past it. Every outcome other than a result (timeout, crash, error) is an
:class:`~mlgate.errors.EngineError`, hence a deny. Fork only from a single-threaded process
(the CLI); the webhook evaluates on its gate thread without a deadline child.
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import Callable

from mlgate.errors import EngineError


def evaluate_with_deadline(evaluate: Callable[[], str], timeout_s: float, *, engine: str = "") -> str:
    """The text ``evaluate()`` returns, computed in a child process killed at the deadline.

    ``evaluate`` raises :class:`EngineError` with a one-line message on failure; the message
    reaches the caller unchanged."""
    suffix = f" ({engine})" if engine else ""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child process; its result is checked by the parent
        os.close(read_fd)
        status = 0
        try:
            payload = b"R" + evaluate().encode("utf-8")
        except EngineError as exc:
            payload, status = b"E" + exc.diagnostics().encode("utf-8"), 1
        except BaseException as exc:  # noqa: BLE001 - anything else is a failed evaluation too
            payload, status = b"E" + f"policy evaluation failed{suffix}: {' '.join(str(exc).split())}".encode("utf-8"), 1
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view):]
        os._exit(status)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise EngineError(f"policy evaluation exceeded the {timeout_s:g} s deadline{suffix}")
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    payload = b"".join(chunks)
    if not payload or payload[:1] not in (b"R", b"E"):
        raise EngineError(f"policy evaluation crashed{suffix} (child status {status})")
    if payload[:1] == b"E":
        raise EngineError(payload[1:].decode("utf-8", "replace"))
    return payload[1:].decode("utf-8")
