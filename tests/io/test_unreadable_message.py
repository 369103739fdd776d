"""An unreadable image file gets one message in the project's words, not the decoder's raw text."""

from __future__ import annotations

import pytest

from gdvision.errors import InputError
from gdvision.io.images import read_image


@pytest.mark.parametrize(("name", "data"), [("t.png", b"not an image at all"), ("t.jpg", b"xx"), ("t.png", b"xx")])
def test_an_unknown_or_corrupt_file_is_named_once_without_backticks(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_image(path)
    msg = str(err.value)
    assert msg == f"cannot read image '{path}': not a readable image (unknown or corrupt format)"
    assert "`" not in msg and msg.count(name) == 1 and "backend" not in msg and "iomode" not in msg


def test_a_truncated_png_keeps_the_decoders_reason(tmp_path):
    from pathlib import Path

    good = Path(__file__).resolve().parents[2] / "sample_data" / "natural" / "coffee.png"
    path = tmp_path / "cut.png"
    path.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputError, match=r"cannot read image '.*cut\.png': image file is truncated$"):
        read_image(path)
