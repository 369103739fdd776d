"""Depth I/O: camera readers and validation, metrics, PFM/PNG16/PLY writers (pinned on the files' raw bytes)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gdvision.depth.cameras import camera_center, world_points
from gdvision.depth.metrics import depth_metrics, depth_to_disparity, disparity_metrics, disparity_to_depth
from gdvision.errors import InputError, UsageError
from gdvision.io.cameras import cameras_for_views, read_cameras
from gdvision.io.depth_files import read_pfm, read_ply_header, write_depth_png16, write_pfm, write_ply

K = [[100.0, 0.0, 31.5], [0.0, 100.0, 23.5], [0.0, 0.0, 1.0]]


def _rot(axis: np.ndarray, ang: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    X = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(ang) * X + (1 - np.cos(ang)) * X @ X


def _center(cam) -> np.ndarray:
    return camera_center(torch.from_numpy(cam.world_to_cam)).numpy()


def test_gdvision_json_and_lookup(tmp_path: Path) -> None:
    T = np.eye(4)
    T[0, 3] = -0.2
    path = tmp_path / "cams.json"
    path.write_text(
        json.dumps({"a.png": {"K": K, "world_to_cam": np.eye(4).tolist()}, "b": {"K": K, "world_to_cam": T.tolist()}})
    )
    cs = read_cameras(path)
    cams = cameras_for_views(cs, [Path("x/a.png"), Path("y/b.jpg")], [(48, 64), (48, 64)])
    np.testing.assert_allclose(cams[1].world_to_cam, T)
    np.testing.assert_allclose(_center(cams[1]), [0.2, 0, 0])
    with pytest.raises(InputError, match=r"cams.json.*no camera for view 'c.png'"):
        cameras_for_views(cs, [Path("c.png")], [(48, 64)])
    with pytest.raises(InputError, match="principal point"):
        cameras_for_views(cs, [Path("a.png")], [(12, 16)])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"K": K}, "missing field 'world_to_cam'"),
        ({"K": [[1, 0], [0, 1]], "world_to_cam": np.eye(4).tolist()}, "field 'K' must be 3x3"),
        ({"K": [[100, 0, 31], [0, "nan", 23], [0, 0, 1]], "world_to_cam": np.eye(4).tolist()}, "'K'"),
        ({"K": K, "world_to_cam": (2 * np.eye(4)).tolist()}, "world_to_cam"),
        ({"K": K, "world_to_cam": np.eye(4).tolist(), "width": -3}, "field 'width'"),
    ],
)
def test_gdvision_json_errors_name_file_and_field(tmp_path: Path, entry: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"a.png": entry}).replace('"nan"', "NaN"))
    with pytest.raises(InputError, match=message) as exc:
        read_cameras(path)
    assert "bad.json" in str(exc.value) and "\n" not in str(exc.value)


def test_json_size_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"a.png": {"K": K, "world_to_cam": np.eye(4).tolist(), "width": 64, "height": 48}}))
    with pytest.raises(InputError, match="'width'/'height' are 64x48 but image"):
        cameras_for_views(read_cameras(path), [Path("a.png")], [(50, 64)])


def test_shared_calib_json_layout(sample_dir: Path) -> None:
    cs = read_cameras(sample_dir / "stereo_motorcycle" / "calib.json")
    assert set(cs.cameras) == {"left.png", "right.png"}
    assert _center(cs.cameras["right.png"])[0] == pytest.approx(193.001)


def test_colmap_text_model(tmp_path: Path) -> None:
    R = _rot(np.array([0.2, 1.0, 0.1]), 0.3)
    t = np.array([0.1, -0.2, 0.5])
    # quaternion (w, x, y, z) of R
    w = np.sqrt(1 + np.trace(R)) / 2
    q = [w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)]
    (tmp_path / "cameras.txt").write_text(
        "# Camera list\n1 PINHOLE 64 48 100 101 32 24\n2 OPENCV 64 48 100 100 32 24 0.1 0.01 0 0\n"
    )
    (tmp_path / "images.txt").write_text(
        "# Image list\n"
        f"1 {' '.join(map(str, q))} {' '.join(map(str, t))} 1 imgs/a.jpg\n1.0 2.0 -1\n"
        "2 1 0 0 0 -0.3 0 0 2 b.jpg\n\n"
    )
    cs = read_cameras(tmp_path)
    a = cs.cameras["imgs/a.jpg"]
    np.testing.assert_allclose(a.world_to_cam[:3, :3], R, atol=1e-9)
    np.testing.assert_allclose(a.world_to_cam[:3, 3], t)
    np.testing.assert_allclose(a.K, [[100, 0, 31.5], [0, 101, 23.5], [0, 0, 1]])  # corner -> centre origin
    cams = cameras_for_views(cs, [Path("a.jpg"), Path("b.jpg")], [(48, 64), (48, 64)])
    assert _center(cams[1])[0] == pytest.approx(0.3)
    with pytest.raises(InputError, match="camera .imgs/a.jpg.: fields .width./.height. are 64x48 but image"):
        cameras_for_views(cs, [Path("a.jpg")], [(96, 128)])
    (tmp_path / "cameras.txt").write_text("1 FISHEYE 64 48 1 2 3\n")
    with pytest.raises(InputError, match="cameras.txt' line 1: unsupported camera model"):
        read_cameras(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="missing 'cameras.txt'"):
        read_cameras(empty)


def test_middlebury_calib_scaled_to_quarter_size(tmp_path: Path, sample_dir: Path) -> None:
    calib = tmp_path / "calib.txt"
    calib.write_text(
        "cam0=[3979.911 0 1244.772; 0 3979.911 1019.507; 0 0 1]\n"
        "cam1=[3979.911 0 1369.115; 0 3979.911 1019.507; 0 0 1]\n"
        "doffs=124.343\nbaseline=193.001\nwidth=2964\nheight=2000\nndisp=270\n"
    )
    cs = read_cameras(calib)
    cams = cameras_for_views(cs, [Path("left.png"), Path("right.png")], [(500, 741), (500, 741)])
    ref = json.loads((sample_dir / "stereo_motorcycle" / "calib.json").read_text())
    np.testing.assert_allclose(cams[0].K, ref["cameras"]["left"]["K"], atol=1e-3)
    np.testing.assert_allclose(cams[1].K, ref["cameras"]["right"]["K"], atol=1e-3)
    np.testing.assert_allclose(cams[1].world_to_cam, ref["cameras"]["right"]["T_world_to_cam"])
    with pytest.raises(InputError, match="cameras but 3 views"):
        cameras_for_views(cs, [Path("a"), Path("b"), Path("c")], [(500, 741)] * 3)
    calib.write_text("cam0=[1 0 1; 0 1 1; 0 0 1]\nbaseline=1\n")
    with pytest.raises(InputError, match="missing field 'cam1'"):
        read_cameras(calib)


def test_depth_metrics_known_values() -> None:
    gt = np.array([[2.0, 4.0], [np.nan, 1.0]])
    pred = np.array([[2.2, 4.0], [3.0, np.nan]])
    m = depth_metrics(pred, gt)
    assert m["coverage"] == pytest.approx(2 / 3)
    assert m["abs_rel"] == pytest.approx(0.05)
    assert m["rmse"] == pytest.approx(np.sqrt(0.02))
    assert m["sq_rel"] == pytest.approx(0.01)
    assert m["delta_1"] == 1.0


def test_disparity_metrics_count_missing_as_bad() -> None:
    gt = np.array([10.0, 20.0, 30.0, np.nan, 40.0])
    pred = np.array([10.5, 21.5, 35.0, 1.0, np.nan])
    m = disparity_metrics(pred, gt)
    assert m["bad_1.0"] == pytest.approx(3 / 4)
    assert m["bad_2.0"] == pytest.approx(2 / 4)
    assert m["bad_4.0"] == pytest.approx(2 / 4)
    assert m["holes"] == pytest.approx(1 / 4)
    d = np.array([7.19, 59.91])
    np.testing.assert_allclose(
        depth_to_disparity(disparity_to_depth(d, 994.978, 193.001, 31.086), 994.978, 193.001, 31.086), d
    )


def test_pfm_roundtrip_keeps_nan(tmp_path: Path) -> None:
    a = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    a[1, 2] = np.nan
    write_pfm(tmp_path / "d.pfm", a)
    b = read_pfm(tmp_path / "d.pfm")
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(a[~np.isnan(a)], b[~np.isnan(b)])
    assert (tmp_path / "d.pfm").read_bytes().startswith(b"Pf\n7 5\n-1.0\n")


def test_png16_roundtrip(tmp_path: Path) -> None:
    import imageio.v3 as iio

    d = np.linspace(1.0, 9.0, 48).reshape(6, 8)
    d[0, 0] = np.nan
    write_depth_png16(tmp_path / "d.png", d, 1000.0)
    q = iio.imread(tmp_path / "d.png")
    assert q.dtype == np.uint16 and q[0, 0] == 0
    np.testing.assert_allclose(q[1:] / 1000.0, d[1:], atol=0.5e-3)


def test_pfm_bytes_rows_bottom_to_top_little_endian(tmp_path: Path) -> None:
    """The PFM file itself, not our reader: header, negative scale, float32 LE rows from the bottom row up."""
    d = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, np.nan]], dtype=np.float32)  # 2 rows x 3 columns
    write_pfm(tmp_path / "d.pfm", d)
    data = (tmp_path / "d.pfm").read_bytes()
    header = b"Pf\n3 2\n-1.0\n"  # width height, then scale < 0 = little-endian
    assert data[: len(header)] == header
    body = data[len(header) :]
    assert len(body) == 6 * 4
    values = struct.unpack("<6f", body)
    assert values[:2] == (4.0, 5.0) and np.isnan(values[2])  # bottom row (4, 5, NaN) comes first
    assert values[3:] == (1.0, 2.0, 3.0)
    assert body[12:16] == struct.pack("<f", 1.0) == bytes.fromhex("0000803f")  # explicitly little-endian


def test_ply_bytes_header_and_binary_records(tmp_path: Path) -> None:
    """The PLY file itself: the exact header the writer promises, then 15-byte records (3 x float32 LE, 3 x uchar)."""
    pts = np.array([[1.0, -2.0, 3.5], [0.25, 0.0, 1e3]])
    col = np.array([[1.0, 0.0, 0.5], [0.2, 0.4, 1.2]])  # 0.5 -> 128, 1.2 clips to 255
    write_ply(tmp_path / "p.ply", pts, col)
    data = (tmp_path / "p.ply").read_bytes()
    header = (
        b"ply\nformat binary_little_endian 1.0\ncomment written by gdvision depth\nelement vertex 2\n"
        b"property float x\nproperty float y\nproperty float z\n"
        b"property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    assert data[: len(header)] == header
    body = data[len(header) :]
    assert len(body) == 2 * 15
    assert struct.unpack("<fffBBB", body[:15]) == (1.0, -2.0, 3.5, 255, 0, 128)
    assert struct.unpack("<fffBBB", body[15:]) == (0.25, 0.0, 1000.0, 51, 102, 255)


def test_ply_points(tmp_path: Path) -> None:
    d = np.full((4, 5), 2.0)
    d[0, 0] = np.nan
    T = np.eye(4)
    T[0, 3] = -1.0  # camera at world x = +1
    pts_t, idx = world_points(torch.from_numpy(d), torch.tensor(K), torch.from_numpy(T))
    pts, col = pts_t.numpy(), np.full((19, 3), 0.5)
    assert pts.shape == (19, 3) and idx[0] == 1 and idx[-1] == 19
    np.testing.assert_allclose(pts[:, 2], 2.0)
    Kinv = np.linalg.inv(np.array(K))
    np.testing.assert_allclose(pts[-1], Kinv @ [4, 3, 1] * 2.0 + [1, 0, 0])
    write_ply(tmp_path / "p.ply", pts, col)
    header, n = read_ply_header(tmp_path / "p.ply")
    assert n == 19 and "binary_little_endian" in header and "property uchar red" in header
