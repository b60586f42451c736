"""Every command in the README runs as written, in order, on a fresh checkout (issue 19 part 1).

The README's ```sh blocks are run in a scratch copy of the repository (its tracked files, see
:func:`conftest.copy_checkout`), one bash script per block, with the scratch directory as the
working directory (so its `.mlgate.yaml` is found) and mlgate as this environment installed it.
A command's trailing comment says what it must do:

- ``# exit N...``: it must exit N (otherwise 0);
- ``# needs: install|container|cluster...``: skipped, for it installs mlgate (the suite's
  environment has; tests/test_action.py installs from a scratch checkout), needs podman and a
  registry, or a Kubernetes cluster. Nothing else may be skipped.

A command left running in the background (``&``, the webhook) is stopped at the end of its block.
The commands run on the real clock, as a reader's would.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

import pytest

from conftest import REPO, copy_checkout

README = REPO / "README.md"
SKIPPABLE = {"install", "container", "cluster"}
FENCE = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Command:
    block: int
    line: int
    text: str  # the command as written, continuation lines joined with their backslashes
    expect: int
    needs: str | None


def _comment(logical: str) -> str:
    # The trailing comment of the command's last physical line (no README command has " # " in a string).
    last = logical.splitlines()[-1]
    m = re.search(r"(?:^|\s)#\s(.*)$", last)
    return m.group(1).strip() if m else ""


def commands(text: str) -> list[Command]:
    out = []
    for b, m in enumerate(FENCE.finditer(text)):
        start = text.count("\n", 0, m.start(1)) + 1
        pending: list[str] = []
        for i, line in enumerate(m.group(1).splitlines()):
            pending.append(line)
            if line.rstrip().endswith("\\"):
                continue
            logical = "\n".join(pending)
            first = start + i - len(pending) + 1
            pending = []
            if not logical.strip() or logical.lstrip().startswith("#"):
                continue
            comment = _comment(logical)
            needs = re.match(r"needs: ([\w-]+)", comment)
            code = re.match(r"exit (\d+)\b", comment)
            out.append(Command(b, first, logical, int(code.group(1)) if code else 0, needs.group(1) if needs else None))
        assert not pending, f"README.md:{start}: a sh block ends in a continuation line"
    return out


COMMANDS = commands(README.read_text())


def test_the_readme_has_runnable_blocks():
    assert len({c.block for c in COMMANDS}) >= 8
    unknown = {c.needs for c in COMMANDS if c.needs} - SKIPPABLE
    assert not unknown, f"README commands skipped for reasons the test does not accept: {unknown}"
    skipped = [c for c in COMMANDS if c.needs]
    assert len(skipped) <= 10, "keep the commands that cannot run here few"
    assert all(c.needs == "cluster" for c in skipped if "kubectl" in c.text)
    for c in COMMANDS:  # the placeholders a reader cannot run, unless the command is one of those
        if not c.needs:
            assert not re.search(r"\bRELEASE\b|\.\.\.(?!\w)|preds\.csv", c.text.split(" # ")[0]), f"README.md:{c.line}: a placeholder: {c.text}"


def test_tags_are_read():
    parsed = commands("```sh\nmlgate a   # exit 1: why\nmlgate b \\\n  --x   # needs: cluster\n# a comment\nmlgate c\n```\n")
    assert [(c.text.split()[1], c.expect, c.needs) for c in parsed] == [("a", 1, None), ("b", 0, "cluster"), ("c", 0, None)]


def _script(block: list[Command], rc_file) -> str:
    lines = ["set -o pipefail"]
    for n, c in enumerate(block):
        if c.needs:
            lines.append(f"echo '{n} skipped' >> '{rc_file}'")
            continue
        lines += [c.text, f"echo \"{n} $?\" >> '{rc_file}'"]
    # The background server (if any) stops with its block.
    lines.append('for p in $(jobs -p); do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; true')
    return "\n".join(lines) + "\n"


def test_every_readme_command_runs_as_written(tmp_path):
    scratch = copy_checkout(tmp_path / "checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
    env.pop("MLFLOW_TRACKING_URI", None)
    failures = []
    ran = 0
    for b in sorted({c.block for c in COMMANDS}):
        block = [c for c in COMMANDS if c.block == b]
        rc_file = tmp_path / f"rc-{b}"
        rc_file.write_text("")
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-c", _script(block, rc_file)], cwd=scratch, env=env,
                              capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
        codes = dict(line.split(" ", 1) for line in rc_file.read_text().splitlines())
        for n, c in enumerate(block):
            got = codes.get(str(n))
            if got == "skipped":
                continue
            ran += 1
            if got != str(c.expect):
                failures.append(f"README.md:{c.line}: exit {got}, expected {c.expect}: {c.text}\n{proc.stderr[-3000:]}")
    assert not failures, "\n\n".join(failures)
    assert ran >= 25
