"""Reading untrusted files: size caps, strict JSON, alias-free YAML, path containment; and
showing what was read (:func:`printable`, :func:`dumps_json`) without letting it drive a terminal.

Every failure is an :class:`InputError` naming the file (and field), never a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from mlgate.errors import InputError

#: Evidence and manifests are small documents; anything larger is refused before parsing.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


def display(path: Path | str) -> str:
    """A path as a person typed it: relative to the working directory when possible."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


# --------------------------------------------------------------------------- output
#: Characters a terminal, an XML parser or a code-review UI may act on instead of showing: C0
#: controls (ESC, CR, BEL, BS...), DEL, C1 controls (U+0080-U+009F: U+009B is a one-character CSI
#: on some terminals), bidirectional overrides, embeddings, isolates and marks (Trojan Source,
#: CVE-2021-42574), line and paragraph separators, and lone surrogates (no UTF-8 form at all).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_KEEP_NL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    ch = match.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(value: Any, *, keep_newlines: bool = False) -> str:
    """``value`` as text that is safe to show: every control, bidi or separator character is
    written as its escape (``ESC`` as ``\\x1b``, CR as ``\\r``, U+202E as ``\\u202e``), so a
    manifest or an evidence file cannot move the cursor, erase a line, recolour or reorder what
    mlgate prints. ``keep_newlines`` keeps ``\\n`` (a multi-line report built by mlgate itself)."""
    text = value if isinstance(value, str) else str(value)
    return (_UNSAFE_KEEP_NL if keep_newlines else _UNSAFE).sub(_escape, text)


_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def dumps_json(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, **kwargs)`` with the characters :func:`printable`
    escapes written as JSON ``\\uXXXX`` escapes (JSON itself escapes the C0 controls): the same
    document once parsed, but bytes that are safe on a terminal. Only string contents can hold
    such characters, so the substitution never touches the JSON structure."""
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


#: Flags for opening a file mlgate only reads: ``O_NONBLOCK`` so that opening a named pipe (FIFO)
#: returns at once instead of waiting for a writer, ``O_NOCTTY`` so that a terminal device never
#: becomes the controlling terminal. Whether it is a regular file is checked on the opened
#: descriptor (:func:`open_regular`), then the descriptor is made blocking again.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words, for an error message."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return kind
    return "not a regular file"


class NotRegularFile(OSError):
    """A path names a FIFO, a device, a socket or a directory where a regular file is expected."""

    def __init__(self, path: Path | str, mode: int):
        self.kind = file_kind(mode)
        super().__init__(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                         f"expected a regular file, found {self.kind}", str(path))


def open_regular(path: Path | str, *, follow_symlinks: bool = True) -> BinaryIO:
    """Open ``path`` for reading (binary, unbuffered) only if it is a regular file.

    A named pipe, a device, a socket or a directory raises :class:`NotRegularFile` (an OSError)
    at once: ``stat`` first, so nothing else is ever opened (opening a device can act on it);
    then the type is checked again on the opened descriptor, so a file swapped for a FIFO
    between the two is refused too, and ``O_NONBLOCK`` makes that open return at once.
    With ``follow_symlinks=False`` a symbolic link is refused too (``O_NOFOLLOW``).
    Other failures are the usual OSErrors (FileNotFoundError, PermissionError...)."""
    st = os.stat(path, follow_symlinks=follow_symlinks)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, st.st_mode)
    try:
        fd = os.open(path, _READ_FLAGS | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0)))
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:  # became a symlink since the lstat
            raise NotRegularFile(path, stat.S_IFLNK) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: Path, *, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    name = display(path)
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise InputError(f"file is {size / 1e6:.1f} MB, larger than the {limit // (1024 * 1024)} MiB limit for a document", file=name)
            data = _read_upto(fh, limit + 1, first=size + 1)
    except FileNotFoundError:
        raise InputError("file not found", file=name) from None
    except NotRegularFile as exc:
        if exc.kind == "a directory":
            raise InputError("expected a file, found a directory", file=name) from None
        raise InputError(exc.strerror, file=name) from None
    except IsADirectoryError:
        raise InputError("expected a file, found a directory", file=name) from None
    except PermissionError:
        raise InputError("permission denied", file=name) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=name) from None
    if len(data) > limit:
        raise InputError(f"file is larger than the {limit // (1024 * 1024)} MiB limit for a document", file=name)
    return data


def _read_upto(fh: BinaryIO, n: int, *, first: int) -> bytes:
    """Up to ``n`` bytes: one read of ``first`` bytes (the size fstat gave, plus one to see the
    end), then more only if the file grew meanwhile (an unbuffered read may also return short)."""
    chunks, left, ask = [], n, first
    while left > 0:
        chunk = fh.read(min(left, ask))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
        ask = 1 << 20
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def sha256_regular_file(path: Path, *, field: str | None = None) -> str:
    """sha256 (hex) of a regular file, streamed in 1 MiB reads (datasets can be large); a FIFO, a
    device, a socket or a file that cannot be read is an :class:`InputError` naming it."""
    import hashlib

    name = display(path)
    hasher = hashlib.sha256()
    buf = bytearray(1 << 20)
    try:
        with open_regular(path) as fh, memoryview(buf) as view:
            while n := fh.readinto(buf):
                hasher.update(view[:n])
    except FileNotFoundError:
        raise InputError("file not found", file=name, field=field) from None
    except NotRegularFile as exc:
        raise InputError(exc.strerror, file=name, field=field) from None
    except PermissionError:
        raise InputError("permission denied", file=name, field=field) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=name, field=field) from None
    return hasher.hexdigest()


def decode_text(data: bytes, name: str) -> str:
    if b"\x00" in data:
        raise InputError("binary data where a text document was expected", file=name)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (invalid byte at offset {exc.start})", file=name) from None


def _reject_constant(value: str) -> Any:
    raise ValueError(f"non-standard JSON constant {value}")


def parse_json(data: bytes, name: str) -> Any:
    text = decode_text(data, name)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", file=name) from None
    except ValueError as exc:
        raise InputError(f"invalid JSON: {exc}", file=name) from None
    except RecursionError:
        raise InputError("invalid JSON: nesting too deep", file=name) from None


def read_json(path: Path, *, limit: int = MAX_DOCUMENT_BYTES) -> Any:
    return parse_json(read_bytes(path, limit=limit), display(path))


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases: no billion-laughs expansion, no shared nodes."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "YAML aliases are not allowed in mlgate documents", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        """Refuse a key given twice (YAML keeps the last one silently: a reviewer reading the first
        would sign what the gate never reads) and merge keys (``<<``), which hide where a value
        comes from."""
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise yaml.constructor.ConstructorError(
                        None, None, "YAML merge keys (<<) are not allowed in mlgate documents", key_node.start_mark)
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: SafeConstructor refuses it below
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {str(key)[:80]!r} (YAML would keep only the last)", key_node.start_mark)
                seen.add(key)
        return yaml.constructor.SafeConstructor.construct_mapping(self, node, deep=deep)


_CLoader = getattr(yaml, "CSafeLoader", None)


if _CLoader is not None:
    class _CheckedCLoader(_CLoader):  # type: ignore[misc, valid-type]
        """libyaml's parser and composer (several times faster than PyYAML's own, which every
        document mlgate reads went through: manifests, trust policies, settings), the same checks:
        duplicate and merge keys in :meth:`construct_mapping`, aliases found in the composed
        graph (:func:`_refuse_aliases`) before anything is constructed."""

        construct_mapping = _NoAliasLoader.construct_mapping


def _refuse_aliases(root: Any) -> None:
    """An alias composes to a node shared by two parents (or a cycle): walked in document order
    (an anchor comes before its aliases), the first node reached twice is an alias, refused at
    the collection that holds it. Nothing is expanded before this, so no billion laughs."""
    seen: set[int] = set()
    stack: list[tuple[Any, Any]] = [(root, None)]
    while stack:
        node, parent = stack.pop()
        if id(node) in seen:
            mark = (parent if parent is not None else node).start_mark
            raise yaml.constructor.ConstructorError(None, None, "YAML aliases are not allowed in mlgate documents", mark)
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                stack.append((value, node))
                stack.append((key, node))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, node) for item in reversed(node.value))


def _load(text: str) -> Any:
    if _CLoader is None:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    loader = _CheckedCLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_aliases(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_yaml(text: str, name: str) -> Any:
    try:
        return _load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise InputError(f"invalid YAML{where}: {exc.problem or exc.context}", file=name) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", file=name) from None
    except RecursionError:
        raise InputError("invalid YAML: nesting too deep", file=name) from None


def read_yaml(path: Path, *, limit: int = MAX_DOCUMENT_BYTES) -> Any:
    name = display(path)
    return parse_yaml(decode_text(read_bytes(path, limit=limit), name), name)


def resolve_inside(root: Path, relative: str, *, file: str, field: str) -> Path:
    """Resolve ``relative`` under ``root``; refuse absolute paths, ``..`` and symlinks that leave it."""
    if not isinstance(relative, str) or not relative:
        raise InputError("expected a non-empty relative path", file=file, field=field)
    if "\x00" in relative:
        raise InputError("path contains a NUL byte", file=file, field=field)
    candidate = Path(relative)
    if candidate.is_absolute() or relative.startswith(("/", "\\")):
        raise InputError(f"absolute path {relative!r} is not allowed; paths are relative to the release directory", file=file, field=field)
    if ".." in candidate.parts:
        raise InputError(f"path {relative!r} leaves the release directory ('..' is not allowed)", file=file, field=field)
    root_resolved = root.resolve()
    resolved = (root_resolved / candidate).resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise InputError(f"path {relative!r} resolves outside the release directory (symlink to {resolved})", file=file, field=field)
    return resolved
