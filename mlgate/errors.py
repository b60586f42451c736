"""One error base that explains itself to a person (sigstore's habit).

Front doors catch :class:`MlgateError` only: a real bug still shows a traceback.
Every message is one line and names the file and, where there is one, the field.
"""

from __future__ import annotations


class MlgateError(Exception):
    """Base of every expected, user-facing failure."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.message = message
        self.file = file
        self.field = field
        super().__init__(self.diagnostics())

    def diagnostics(self) -> str:
        parts = [p for p in (self.file, self.field) if p]
        text = ": ".join([*parts, self.message])
        # Messages are one line: never let a newline from a payload split them.
        return " ".join(text.split())


class InputError(MlgateError):
    """A file the user gave us is missing, unreadable, malformed or invalid."""


class PolicyError(MlgateError):
    """The policy cannot be loaded or evaluated (always a deny)."""


class EngineError(PolicyError):
    """The Rego engine failed while evaluating."""


class UndefinedDecision(PolicyError):
    """The policy produced no decision: fail closed."""


class SignatureError(MlgateError):
    """A signature could not be produced or verified."""


class AuditError(MlgateError):
    """The audit record could not be written: the decision becomes deny."""
