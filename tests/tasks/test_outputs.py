"""The output policy's rules (gdvision.tasks.outputs): real paths, out-dir containment, inputs protected, existing
outputs refused unless --overwrite / --resume, one owner per file, safe manifest ids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gdvision.errors import UsageError
from gdvision.tasks.outputs import OutputPolicy, real_path, safe_id


@pytest.fixture()
def run(tmp_path: Path) -> tuple[Path, Path]:
    """(an input image, an empty out-dir) in a fresh folder."""
    img = tmp_path / "a.png"
    img.write_bytes(b"image")
    out = tmp_path / "out"
    out.mkdir()
    return img, out


def test_claim_returns_the_real_path(run: tuple[Path, Path]) -> None:
    img, out = run
    (out / "sub").mkdir()
    got = OutputPolicy(out, inputs=[img]).claim(out / "sub" / ".." / "r.json")
    assert got == real_path(out / "r.json") and got.is_absolute() and ".." not in got.parts


def test_symlink_to_an_input_is_refused_as_that_input(run: tuple[Path, Path]) -> None:
    img, out = run
    inside = out / "in.png"  # an input that lives in the out-dir, reached through a link
    inside.write_bytes(b"image")
    (out / "link.png").symlink_to(inside)
    with pytest.raises(UsageError, match=r"output '.*link\.png' would overwrite input '.*in\.png'"):
        OutputPolicy(out, inputs=[inside], overwrite=True).claim(out / "link.png")
    # an input given through a link is protected under its real name too
    link_in = out.parent / "in_link.png"
    link_in.symlink_to(img)
    with pytest.raises(UsageError, match="would overwrite input"):
        OutputPolicy(None, inputs=[link_in], overwrite=True).claim(img)


def test_nothing_is_written_outside_the_out_dir(run: tuple[Path, Path], tmp_path: Path) -> None:
    img, out = run
    policy = OutputPolicy(out, inputs=[img])
    with pytest.raises(UsageError, match="outside --out-dir"):
        policy.claim(out / ".." / "escape.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)  # a symlinked subfolder leads out of the out-dir
    with pytest.raises(UsageError, match="outside --out-dir"):
        policy.claim(out / "sub" / "r.json")
    assert not list(elsewhere.iterdir())


def test_input_is_refused_even_with_overwrite_and_resume(run: tuple[Path, Path]) -> None:
    img, _ = run
    policy = OutputPolicy(None, inputs=[img, None], overwrite=True, resume=True)
    with pytest.raises(UsageError, match="would overwrite input"):
        policy.claim(img, existing_ok=True)
    assert img.read_bytes() == b"image"
    later = img.parent / "mask.png"
    policy.add_inputs([later])
    assert policy.is_input(later)
    with pytest.raises(UsageError, match="would overwrite input"):
        policy.claim(later)


def test_existing_output_refused_unless_overwrite(run: tuple[Path, Path]) -> None:
    img, out = run
    (out / "r.json").write_text("{}")
    with pytest.raises(UsageError, match=r"'.*r\.json' exists: pass --overwrite to replace it"):
        OutputPolicy(out, inputs=[img]).claim(out / "r.json")
    with pytest.raises(UsageError, match="pass --resume or --overwrite"):
        OutputPolicy(out, flags="--resume or --overwrite").claim(out / "r.json")
    assert OutputPolicy(out, overwrite=True).claim(out / "r.json") == real_path(out / "r.json")


def test_resume_and_existing_ok_accept_an_existing_output(run: tuple[Path, Path]) -> None:
    _, out = run
    (out / "r.json").write_text("{}")
    assert OutputPolicy(out, resume=True).claim(out / "r.json").name == "r.json"
    assert OutputPolicy(out).claim(out / "r.json", existing_ok=True).name == "r.json"


def test_two_owners_of_one_path_are_refused(run: tuple[Path, Path]) -> None:
    _, out = run
    policy = OutputPolicy(out)
    policy.claim(out / "x.json", owner="item 'a' (row 1)")
    policy.claim(out / "x.json", owner="item 'a' (row 1)")  # the same owner may claim again
    with pytest.raises(UsageError, match=r"written by both item 'a' \(row 1\) and item 'b' \(row 2\)"):
        policy.claim(out / "." / "x.json", owner="item 'b' (row 2)")


def test_claim_all_keys_are_owners_and_none_is_skipped(run: tuple[Path, Path]) -> None:
    img, out = run
    policy = OutputPolicy(None, inputs=[img])
    got = policy.claim_all({"--out": out / "r.json", "--out-viz": None, "--out-matches": out / "m.json"})
    assert got == {"--out": real_path(out / "r.json"), "--out-matches": real_path(out / "m.json")}
    with pytest.raises(UsageError, match="written by both --out and --out-viz"):
        OutputPolicy(None).claim_all({"--out": out / "r.json", "--out-viz": out / "r.json"})
    with pytest.raises(UsageError, match="would overwrite input"):
        policy.claim_all({"--out": img})


def test_check_out_dir(run: tuple[Path, Path]) -> None:
    img, out = run
    OutputPolicy(out).check_out_dir()
    OutputPolicy(out / "not_yet").check_out_dir()
    with pytest.raises(UsageError, match="is an input of the run"):
        OutputPolicy(img, inputs=[img]).check_out_dir()
    with pytest.raises(UsageError, match="is not a folder"):
        OutputPolicy(img).check_out_dir()


@pytest.mark.parametrize("good", ["astronaut__camera", "a.b", "x-1", "...", "a b", "é"])
def test_safe_id_keeps_usable_names(good: str) -> None:
    assert safe_id(good) == good


@pytest.mark.parametrize("bad", ["", " ", ".", "..", "../x", "a/b", "a\\b", "a\x00b", "-rf", "~x", " a", "a "])
def test_safe_id_refuses_unusable_names(bad: str) -> None:
    with pytest.raises(UsageError, match="is not a safe file name"):
        safe_id(bad)


def test_new_outputs_are_not_created_by_claiming(run: tuple[Path, Path]) -> None:
    _, out = run
    OutputPolicy(out).claim(out / "new.json")
    assert not os.path.lexists(out / "new.json")


def test_a_hard_link_to_an_input_is_an_input(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(b"input")
    out = tmp_path / "out"
    out.mkdir()
    os.link(src, out / "a.png")
    with pytest.raises(UsageError, match="same file under another name"):
        OutputPolicy(out, inputs=[src], overwrite=True).claim(out / "a.png")
    assert src.read_bytes() == b"input"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "tab\there", "del\x7f"])
def test_ids_with_control_characters_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="not a safe file name"):
        safe_id(bad)
