"""Manifest ids and the run's output policy: safe file names, no clashes, inputs never replaced, BOM manifests."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from gdvision.cli.app import app

runner = CliRunner()


def _images(d: Path, *names: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(d / name, (rng.random((24, 32, 3)) * 255).astype(np.uint8))


def _edges(manifest: Path, out: Path, *extra: str) -> object:
    return runner.invoke(
        app, ["edges", "--manifest", str(manifest), "-o", str(out), "--device", "cpu", "--json", *extra]
    )


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("bad_id", ["ABS", "../x", "a/b", "..", "-rf"])
def test_unsafe_explicit_ids_are_refused_and_nothing_escapes(tmp_path: Path, bad_id: str) -> None:
    """Defect 1: ``/x``, ``../x``, ``a/b`` as ids wrote outside --out-dir; now exit 2 naming the line, no file."""
    work = tmp_path / "work"
    work.mkdir()
    _images(work, "a.png", "b.png")
    if bad_id == "ABS":
        bad_id = str(tmp_path / "escaped")
    (work / "m.csv").write_text(f"image,id\na.png,ok\nb.png,{bad_id}\n")
    before = _files(tmp_path)
    r = _edges(work / "m.csv", work / "out")
    assert r.exit_code == 2, r.output
    assert "line 3" in r.output and "not a safe file name" in r.output
    assert _files(tmp_path) == before  # nothing written anywhere, not even the good row (refused before any work)


def test_empty_jsonl_id_is_refused(tmp_path: Path) -> None:
    _images(tmp_path, "a.png")
    (tmp_path / "m.jsonl").write_text(json.dumps({"image": "a.png", "id": "  "}) + "\n")
    r = _edges(tmp_path / "m.jsonl", tmp_path / "out")
    assert r.exit_code == 2 and "line 1" in r.output and "empty id" in r.output


@pytest.mark.parametrize(
    ("command", "header", "row"),
    [
        ("register", "a,b,id", "a.png,b.png,../up"),
        ("depth", "views,cameras,id", "a.png;b.png,cams.json,../up"),
        ("attack", "a,b,id", "a.png,b.png,../up"),
    ],
)
def test_unsafe_ids_refused_for_every_command(tmp_path: Path, command: str, header: str, row: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _images(work, "a.png", "b.png")
    (work / "m.csv").write_text(f"{header}\n{row}\n")
    r = runner.invoke(app, [command, "--manifest", str(work / "m.csv"), "--out-dir", str(work / "out"), "--json"])
    assert r.exit_code == 2 and "'../up' is not a safe file name" in r.output
    assert not (work / "up").exists() and not (work / "up.json").exists() and not (work / "out").exists()


def test_out_dir_holding_the_input_images(tmp_path: Path) -> None:
    """Defect 2: ``edges --manifest dir/m.csv --out-dir dir`` replaced the input images with their edge maps."""
    _images(tmp_path, "a.png", "b.png")
    (tmp_path / "m.csv").write_text("image\na.png\nb.png\n")
    before = _files(tmp_path)
    for extra in ([], ["--overwrite"], ["--resume"]):
        r = _edges(tmp_path / "m.csv", tmp_path, *extra)
        assert r.exit_code == 2, r.output
        assert "would overwrite input" in r.output and "a.png" in r.output
        assert _files(tmp_path) == before  # refused before any work: no log, no output, inputs intact


def test_overwrite_through_a_symlinked_out_dir_keeps_the_inputs(tmp_path: Path) -> None:
    """Defect 4: ``--overwrite`` with an out-dir that is a link to the inputs' folder replaced an input."""
    data = tmp_path / "data"
    data.mkdir()
    _images(data, "a.png")
    (tmp_path / "m.csv").write_text("image\ndata/a.png\n")
    link = tmp_path / "link"
    link.symlink_to(data, target_is_directory=True)
    before = _files(data)
    r = _edges(tmp_path / "m.csv", link, "--overwrite")
    assert r.exit_code == 2 and "would overwrite input" in r.output
    assert _files(data) == before


def test_an_output_may_not_replace_the_manifest(tmp_path: Path) -> None:
    """A register manifest ``m.json`` next to the outputs: the item with id ``m`` would write ``m.json``."""
    _images(tmp_path, "a.png", "b.png")
    (tmp_path / "m.json").write_text(json.dumps({"a": "a.png", "b": "b.png", "id": "m"}) + "\n")
    before = _files(tmp_path)
    r = runner.invoke(app, ["register", "--manifest", str(tmp_path / "m.json"), "--out-dir", str(tmp_path), "--json"])
    assert r.exit_code == 2 and "would overwrite input" in r.output and "m.json" in r.output
    assert _files(tmp_path) == before


def test_generated_ids_never_clash_with_explicit_ones(tmp_path: Path) -> None:
    """Defect 5: rows ``a.png,`` / ``b.png,a__2`` / ``../m/a.png,`` gave two items the id ``a__2``: one output lost,
    the summary said ``already_done: -1`` and the run exited 0."""
    work = tmp_path / "work"
    work.mkdir()
    _images(work, "a.png", "b.png")
    _images(tmp_path, "m/a.png", seed=1)
    (work / "m.csv").write_text("image,id\na.png,\nb.png,a__2\n../m/a.png,\n")
    out = tmp_path / "out"
    r = _edges(work / "m.csv", out)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert (rep["items"], rep["ok"], rep["done_now"], rep["already_done"], rep["complete"]) == (3, 3, 3, 0, True)
    log = [json.loads(x) for x in (out / "run.jsonl").read_text().splitlines()]
    by_id = {x["id"]: Path(x["inputs"]["image"]) for x in log}
    assert by_id == {"a": work / "a.png", "a__2": work / "b.png", "a__3": work / ".." / "m" / "a.png"}
    outputs = [(out / f"{i}.png").read_bytes() for i in ("a", "a__2", "a__3")]
    assert len(set(outputs)) == 3  # three different images, three files kept


def test_equal_explicit_ids_name_both_rows(tmp_path: Path) -> None:
    _images(tmp_path, "a.png", "b.png")
    (tmp_path / "m.csv").write_text("image,id\na.png,x\nb.png,y\nb.png,x\n")
    r = _edges(tmp_path / "m.csv", tmp_path / "out")
    assert r.exit_code == 2 and "line 2 and line 4 both have id 'x'" in r.output
    assert not (tmp_path / "out").exists()


def test_pair_ids_get_fresh_suffixes(tmp_path: Path) -> None:
    from gdvision.runs.engine import manifest_items
    from gdvision.tasks.register import RegisterJob

    (tmp_path / "m.csv").write_text(
        "a,b,id\na.png,b.png,\nc.png,d.png,a__b__2\n../m/a.png,b.png,\na.png,b.png,a__b__3\n"
    )
    items = manifest_items(tmp_path / "m.csv", RegisterJob(None, None), tmp_path / "out")
    assert [it.id for it in items] == ["a__b", "a__b__2", "a__b__4", "a__b__3"]
    assert len({it.out for it in items}) == 4 and all(it.policy is items[0].policy for it in items)


def test_two_items_with_one_output_file_name_both_rows(tmp_path: Path) -> None:
    """Ids differ but the job maps them to the same file (here: case-folded): an error naming both rows."""
    from gdvision.errors import UsageError
    from gdvision.runs.engine import manifest_items
    from gdvision.tasks.edges import EdgesJob

    class Folded(EdgesJob):
        def output_of(self, item_id: str, out_dir: Path) -> Path:
            return out_dir / f"{item_id.lower()}.png"

    (tmp_path / "m.csv").write_text("image,id\na.png,A\nb.png,a\n")
    with pytest.raises(UsageError, match=r"item 'A' \(row 1\) and item 'a' \(row 2\)"):
        manifest_items(tmp_path / "m.csv", Folded(None, None), tmp_path / "out")


def test_run_items_refuses_duplicate_ids(tmp_path: Path) -> None:
    """The engine never runs two items with one id (the cause of ``already_done: -1`` and the wrong exit 0)."""
    from gdvision.errors import UsageError
    from gdvision.runs.engine import Item, run_items
    from gdvision.tasks.edges import EdgesJob

    items = [Item(i, "same", {"image": str(tmp_path / "a.png")}, tmp_path / "same.png") for i in range(2)]
    with pytest.raises(UsageError, match="same id"):
        run_items(EdgesJob(None, None), items, tmp_path / "out")


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl"])
def test_manifest_with_a_byte_order_mark(tmp_path: Path, name: str) -> None:
    """Defect 12: a CSV manifest saved with a UTF-8 BOM was refused (``found: \\ufeffimage``)."""
    _images(tmp_path, "a.png")
    text = "image\na.png\n" if name.endswith(".csv") else json.dumps({"image": "a.png"}) + "\n"
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
    r = _edges(tmp_path / name, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ok"] == 1 and (tmp_path / "out" / "a.png").is_file()
