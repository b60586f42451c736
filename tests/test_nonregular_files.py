"""The gate never hangs on a file (issue 15 part 5): a named pipe (FIFO), a device or a socket
where a file is expected is an error at once, naming the file, never a blocked ``open()``.

Each test runs the code under test in a thread with a deadline. On a tree that opens a FIFO
with a plain ``open()`` the thread blocks (no writer ever comes); the test then opens the FIFO
for writing itself, which lets the blocked reader go, and fails saying it hung.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import threading
from pathlib import Path

import pytest
from cli_helpers import run
from conftest import EXAMPLES

from mlgate.errors import InputError

HANG_S = 10.0


def no_hang(fn, *fifos: Path, limit_s: float = HANG_S):
    """``fn()``'s result (or exception) if it finishes within ``limit_s``; else unblock and fail."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        for fifo in fifos:  # a writer that opens and closes: the blocked reader sees EOF and returns
            for _ in range(50):
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
        thread.join(5)
        pytest.fail(f"hung for {limit_s} s on a non-regular file: {', '.join(str(f) for f in fifos)}")
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture
def release(tmp_path):
    dst = tmp_path / "readmission-risk"
    shutil.copytree(EXAMPLES / "readmission-risk", dst)
    return dst


def fifo_at(path: Path) -> Path:
    path.unlink()
    os.mkfifo(path)
    return path


def last_record(log: Path) -> dict:
    return json.loads(log.read_text().splitlines()[-1])


# ----------------------------------------------------------------------- the CLI: `mlgate check`
FIFO_TARGETS = [
    "mlgate.yaml",                        # the manifest
    "evidence/model_card.md",             # an evidence file
    "evidence/bias_audit.json",
    "evidence/validation_train.json",
    "evidence/approvals/jane.roe_hospital.example.approval.production.sigstore.json",  # an approval
    "model.sig",                          # the model signature
    "model/config.json",                  # a model file
    "data/train.csv",                     # a dataset
]


@pytest.mark.parametrize("rel", FIFO_TARGETS)
def test_check_refuses_a_fifo_at_once_and_records_an_error(release, tmp_path, rel):
    fifo = fifo_at(release / rel)
    log = tmp_path / "audit.jsonl"
    code, out, err = no_hang(lambda: run(["check", release, "--env", "production", "--trust", EXAMPLES / "trust.yaml",
                                          "--audit-log", log]), fifo)
    assert code == 2, out + err
    assert "Traceback" not in err
    assert Path(rel).name in err and ("named pipe" in err or "not a regular file" in err), err
    record = last_record(log)
    assert record["result"] == "error" and Path(rel).name in json.dumps(record["errors"] if "errors" in record else record)


def test_trust_policy_key_file_that_is_a_fifo(release, tmp_path):
    trust = tmp_path / "trust"
    trust.mkdir()
    text = (EXAMPLES / "trust.yaml").read_text()
    # Jane's inline key becomes a key file next to the trust policy, and that file is a FIFO.
    start = text.index("      - pem: |")
    end = text.index("-----END PUBLIC KEY-----", start) + len("-----END PUBLIC KEY-----\n")
    (trust / "trust.yaml").write_text(text[:start] + "      - path: keys/jane.pem\n" + text[end:])
    (trust / "keys").mkdir()
    fifo = trust / "keys" / "jane.pem"
    os.mkfifo(fifo)
    log = tmp_path / "audit.jsonl"
    code, out, err = no_hang(lambda: run(["check", release, "--env", "production", "--trust", trust / "trust.yaml",
                                          "--audit-log", log]), fifo)
    assert code == 2 and "jane.pem" in err and "named pipe" in err, out + err
    assert last_record(log)["result"] == "error"


# ----------------------------------------------------------------------- the choke points
def test_read_bytes_refuses_fifo_socket_and_device(tmp_path):
    from mlgate.safeio import read_bytes

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe: expected a regular file, found a named pipe \(FIFO\)"):
        no_hang(lambda: read_bytes(fifo), fifo)
    sock_path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(InputError, match="sock: expected a regular file, found a socket"):
            no_hang(lambda: read_bytes(sock_path))
    # /dev/zero has no end: a read would only stop at the size cap, after reading 16 MiB of zeros.
    with pytest.raises(InputError, match="expected a regular file, found a character device"):
        no_hang(lambda: read_bytes(Path("/dev/zero")))
    # A symbolic link to a FIFO is judged by what it points to.
    link = tmp_path / "link"
    link.symlink_to(fifo)
    with pytest.raises(InputError, match="found a named pipe"):
        no_hang(lambda: read_bytes(link), fifo)


def test_sha256_file_refuses_devices_and_fifos(tmp_path):
    """Datasets are hashed by size-unbounded streaming: /dev/zero would never end."""
    from mlgate.canonical import sha256_file

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target, kind in ((fifo, "named pipe"), (Path("/dev/zero"), "character device")):
        with pytest.raises(OSError, match=kind):
            no_hang(lambda t=target: sha256_file(t), fifo)


def test_model_hashing_opens_only_regular_files(tmp_path):
    """The model walk refuses a FIFO it lists; the hashing itself checks the opened file too, so a
    file swapped for a FIFO (or a device) after the listing is refused, not waited on."""
    from mlgate.evidence import model_digest

    fifo = tmp_path / "weights.bin"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"weights.bin: spec.model.path: expected a regular file, found a named pipe"):
        no_hang(lambda: model_digest._hash_file(fifo), fifo)
    with pytest.raises(InputError, match="found a character device"):
        no_hang(lambda: model_digest._hash_file(Path("/dev/zero")))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    os.mkfifo(model / "pipe")
    with pytest.raises(InputError, match="pipe: spec.model.path: not a regular file or directory"):
        no_hang(lambda: model_digest.compute_model_digest(model), model / "pipe")


# ----------------------------------------------------------------------- the stores
def test_file_store_scan_names_a_fifo_manifest_and_load_refuses_a_fifo_evidence_file(tmp_path):
    from mlgate.gate import GateOptions, prepare
    from mlgate.store import FileStore, ModelRef

    store_dir = tmp_path / "store"
    shutil.copytree(EXAMPLES / "readmission-risk", store_dir / "good")
    (store_dir / "bad").mkdir()
    os.mkfifo(store_dir / "bad" / "mlgate.yaml")
    store = FileStore(store_dir)
    index = no_hang(store.scan, store_dir / "bad" / "mlgate.yaml")
    assert len(index) == 1
    assert any("bad/mlgate.yaml" in e and "named pipe" in e for e in index.errors), index.errors

    fifo = fifo_at(store_dir / "good" / "evidence" / "bias_audit.json")
    trust = prepare(GateOptions(environment="production", timeout_s=0, trust_policy=EXAMPLES / "trust.yaml")).trust
    with pytest.raises(InputError, match=r"bias_audit.json: expected a regular file, found a named pipe"):
        no_hang(lambda: store.load(ModelRef("release", "readmission-risk@1.4.0", "t"), trust), fifo)


def test_index_builder_names_a_non_regular_file_it_does_not_publish(tmp_path):
    from mlgate.store import build_index

    store_dir = tmp_path / "store"
    shutil.copytree(EXAMPLES / "readmission-risk", store_dir / "r")
    os.mkfifo(store_dir / "r" / "notes.txt")
    doc = no_hang(lambda: build_index(store_dir), store_dir / "r" / "notes.txt")
    (release,) = doc["releases"]
    assert "notes.txt" not in release["files"] and "mlgate.yaml" in release["files"]
    assert any("notes.txt" in e and "named pipe" in e for e in doc["errors"]), doc["errors"]


def test_webhook_denies_at_once_and_records_an_error(tmp_path):
    """Through `mlgate serve`: an evidence file that is a FIFO is an error decision within the
    request's deadline, recorded, and the next request is answered too (no worker is stuck)."""
    from mlgate.gatekeeper.config import Settings
    from test_gatekeeper_support import RunningWebhook, admit, deployment, records

    store_dir = tmp_path / "store"
    shutil.copytree(EXAMPLES / "readmission-risk", store_dir / "readmission-risk")
    fifo = fifo_at(store_dir / "readmission-risk" / "evidence" / "model_card.md")
    (tmp_path / "hook").mkdir()
    settings = Settings(evidence_store=f"file://{store_dir}", audit=str(tmp_path / "audit.jsonl"),
                        trust_policy=EXAMPLES / "trust.yaml")
    hook = RunningWebhook(tmp_path / "hook", settings)
    try:
        with hook.client(timeout=HANG_S) as client:
            for _ in range(2):
                r = no_hang(lambda: admit(client, deployment("readmission-risk@1.4.0"), timeout="5s"), fifo)
                resp = r.json()["response"]
                assert resp["allowed"] is False and "model_card.md" in resp["status"]["message"], resp
                assert "named pipe" in resp["status"]["message"]
    finally:
        for _ in range(5):  # never leave the server's thread blocked on the pipe
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        hook.stop()
    assert [rec["result"] for rec in records(tmp_path / "audit.jsonl")] == ["error", "error"]


def test_a_dataset_that_is_a_fifo_is_not_taken_for_a_remote_uri(release, tmp_path):
    """Before: a FIFO at a dataset's local path was neither hashed nor missing, so the dataset
    counted as an uncheckable remote uri (a warning). It is an error naming the file."""
    fifo_at(release / "data" / "eval.csv")
    assert stat.S_ISFIFO(os.stat(release / "data" / "eval.csv").st_mode)
    log = tmp_path / "audit.jsonl"
    code, out, err = no_hang(lambda: run(["check", release, "--env", "staging", "--trust", EXAMPLES / "trust.yaml",
                                          "--audit-log", log]), release / "data" / "eval.csv")
    assert code == 2 and "eval.csv" in err and "named pipe" in err, out + err
    assert last_record(log)["result"] == "error"
