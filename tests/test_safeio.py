from __future__ import annotations

import os

import pytest

from mlgate.errors import InputError
from mlgate.safeio import MAX_DOCUMENT_BYTES, parse_json, parse_yaml, read_bytes, read_json, resolve_inside


def test_json_errors_name_file_and_position():
    with pytest.raises(InputError) as exc:
        parse_json(b'{"a": 1,,}', "x.json")
    assert str(exc.value).startswith("x.json: invalid JSON at line 1 column 9")


@pytest.mark.parametrize("payload", [b"\x00\x01\x02garbage", b"\xff\xfe\xfa not utf8", b"NaN", b'{"a": Infinity}', b"[" * 100_000])
def test_garbage_json_is_one_line_input_error(payload):
    with pytest.raises(InputError) as exc:
        parse_json(payload, "evidence/bad.json")
    assert "\n" not in str(exc.value)
    assert str(exc.value).startswith("evidence/bad.json: ")


def test_yaml_alias_bomb_is_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    with pytest.raises(InputError) as exc:
        parse_yaml(bomb, "mlgate.yaml")
    assert "aliases are not allowed" in str(exc.value)
    assert "line 2" in str(exc.value)


def test_yaml_python_tags_are_refused():
    with pytest.raises(InputError):
        parse_yaml("!!python/object/apply:os.system ['true']", "m.yaml")


def test_oversized_file_refused_before_parsing(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(100_000_000)  # sparse: 100 MB without writing them
    with pytest.raises(InputError) as exc:
        read_json(big)
    assert "100.0 MB" in str(exc.value) and f"{MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB" in str(exc.value)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_bytes(tmp_path / "nope.json")
    with pytest.raises(InputError, match="directory"):
        read_bytes(tmp_path)


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../x", "", "a\x00b"])
def test_paths_must_stay_inside(tmp_path, rel):
    with pytest.raises(InputError):
        resolve_inside(tmp_path, rel, file="mlgate.yaml", field="spec.model.path")


def test_symlink_leaving_release_is_refused(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    root = tmp_path / "rel"
    root.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(InputError, match="resolves outside"):
        resolve_inside(root, "link", file="mlgate.yaml", field="spec.evidence.modelCard")
    (root / "inner.txt").write_text("ok")
    os.symlink(root / "inner.txt", root / "ok-link")
    assert resolve_inside(root, "ok-link", file="m", field="f") == (root / "inner.txt").resolve()


def test_libyaml_and_pyyaml_loaders_agree(monkeypatch):
    """parse_yaml composes with libyaml (speed) and checks aliases on the composed graph; PyYAML's own
    loader (the fallback without libyaml) refuses and accepts the same documents."""
    import mlgate.safeio as safeio
    from mlgate.safeio import parse_yaml

    docs = ["a: 1\nb: [1, 2, {c: d}]\n", "a: &x 1\nb: *x\n", "a: 1\na: 2\n", "<<: {a: 1}\n", "x: &a [*a]\n", "- 1\n- {b: 2}\n", "",
            "a: !!python/object:os.system x\n", "a: 1\n---\nb: 2\n", "a: {b: 1, b: 2}", "a: 2025-01-01\nb: 0o17\nc: yes\nd: ~\n",
            "k: |\n  text\n  more\n", "a: [unclosed\n", "? [1, 2]\n: x\n", "a: &s {x: 1}\nb: [*s]\n"]

    def outcome():
        out = []
        for d in docs:
            try:
                out.append(("ok", parse_yaml(d, "t.yaml")))
            except InputError as exc:
                out.append(("refused", "aliases" in str(exc), "duplicate" in str(exc), "merge" in str(exc)))
        return out

    assert safeio._CLoader is not None
    with_libyaml = outcome()
    monkeypatch.setattr(safeio, "_CLoader", None)
    assert outcome() == with_libyaml
    assert [o[0] for o in with_libyaml].count("refused") >= 8
