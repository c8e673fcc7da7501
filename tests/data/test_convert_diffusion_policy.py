"""diffusion_policy / UMI replay buffer export and import.

The real `diffusion_policy` package is not on PyPI (it is a research repository), so the reading
side is emulated from its ReplayBuffer conventions: `zarr.open(path, 'r')` on a format-2 group, the
imagecodecs numcodecs codecs registered first, every array of `meta/` read whole, every `data/<key>`
at least `episode_ends[-1]` long, episodes sliced by `episode_ends`. It runs with this venv's zarr 3
and, when $ROBOT_RL_ZARR2_PYTHON (default .venv-zarr2, which scripts/test.sh makes) exists (zarr-python 2,
as diffusion_policy and UMI pin), with zarr 2 in a subprocess.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

from robot_rl.core.errors import ConfigError, StaleDataError, StoreError
from robot_rl.data.align import sample_at
from robot_rl.data.convert import diffusion_policy as dp
from robot_rl.data.convert.demo import demo_store
from robot_rl.data.episode_store import EpisodeStore

REPO = Path(__file__).resolve().parents[2]
ZARR2_PYTHON = Path(os.environ.get("ROBOT_RL_ZARR2_PYTHON", REPO / ".venv-zarr2" / "bin" / "python"))

# How diffusion_policy's ReplayBuffer reads a buffer (copy_from_path / create_from_path), written
# for both zarr 2 and zarr 3; prints a JSON summary of what it read.
REPLAY_BUFFER_READER = r"""
import json, sys
import numpy as np
import zarr
from imagecodecs.numcodecs import register_codecs

def read_replay_buffer(path):
    register_codecs()
    root = zarr.open(path, mode="r")
    meta = {k: np.asarray(v[:]) for k, v in root["meta"].arrays()}
    ends = meta["episode_ends"]
    assert ends.dtype == np.int64, ends.dtype
    out = {"zarr": zarr.__version__, "episode_ends": ends.tolist(), "keys": {}}
    for key, arr in root["data"].arrays():
        value = arr[: ends[-1]]
        assert value.shape[0] == ends[-1], (key, value.shape)
        first = arr[0: ends[0]]
        out["keys"][key] = {"shape": list(arr.shape), "chunks": list(arr.chunks), "dtype": str(arr.dtype),
                            "sum_first_episode": float(np.asarray(first, dtype=np.float64).sum())}
    return out

if __name__ == "__main__":
    print(json.dumps(read_replay_buffer(sys.argv[1])))
"""

# diffusion_policy's and UMI's readers (real_data_conversion, the robomimic image dataset, UMI's
# dataset) register the codecs of their own module diffusion_policy/codecs/imagecodecs_numcodecs.py,
# not imagecodecs.numcodecs. These stand-ins have exactly that module's constructor signatures
# (identical in both repositories), so a .zarray naming any other parameter fails with the same
# TypeError. Their decode calls imagecodecs like the originals; Jpeg2k's also refuses a non-int
# verbose, as the jpeg2k_decode of UMI's pinned imagecodecs 2023.9.18 does.
DP_CODEC_READER = r"""
import json, sys
import imagecodecs
import numcodecs
import numpy as np
import zarr
from numcodecs.abc import Codec


class JpegXl(Codec):
    codec_id = "imagecodecs_jpegxl"

    def __init__(self, level=None, effort=None, distance=None, lossless=None, decodingspeed=None, photometric=None,
                 planar=None, usecontainer=None, index=None, keeporientation=None, numthreads=None):
        self.level, self.effort, self.distance, self.lossless = level, effort, distance, bool(lossless)
        self.decodingspeed, self.photometric, self.planar = decodingspeed, photometric, planar
        self.usecontainer, self.index, self.keeporientation = usecontainer, index, keeporientation
        self.numthreads = numthreads

    def encode(self, buf):
        raise NotImplementedError("this check only reads")

    def decode(self, buf, out=None):
        return imagecodecs.jpegxl_decode(buf, index=self.index, keeporientation=self.keeporientation,
                                         numthreads=self.numthreads, out=out)


class Jpeg2k(Codec):
    codec_id = "imagecodecs_jpeg2k"

    def __init__(self, level=None, codecformat=None, colorspace=None, tile=None, reversible=None, bitspersample=None,
                 resolutions=None, numthreads=None, verbose=0):
        self.level, self.codecformat, self.colorspace, self.tile = level, codecformat, colorspace, tile
        self.reversible, self.bitspersample, self.resolutions = reversible, bitspersample, resolutions
        self.numthreads, self.verbose = numthreads, verbose

    def encode(self, buf):
        raise NotImplementedError("this check only reads")

    def decode(self, buf, out=None):
        if not isinstance(self.verbose, int):
            raise TypeError(f"an integer is required for verbose, got {self.verbose!r}")
        return imagecodecs.jpeg2k_decode(buf, verbose=self.verbose, numthreads=self.numthreads, out=out)


for cls in (JpegXl, Jpeg2k):
    numcodecs.register_codec(cls)
    assert type(numcodecs.get_codec({"id": cls.codec_id})) is cls
root = zarr.open(sys.argv[1], mode="r")
ends = root["meta/episode_ends"][:]
out = {"zarr": zarr.__version__, "keys": {}}
for key, arr in root["data"].arrays():
    value = np.asarray(arr[: ends[-1]])
    codec = arr.compressor if hasattr(arr, "compressor") else arr.compressors[0]  # zarr 2 | zarr 3
    out["keys"][key] = {"compressor": type(codec).__name__, "sum": float(value.astype(np.float64).sum())}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_store(tmp_path_factory.getbasetemp())  # read-only, shared by the converter tests


@pytest.fixture(scope="module")
def exported(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("dp_out") / "replay_buffer.zarr"
    return out, dp.export_store(demo, out)


def test_export_layout_is_a_format2_replay_buffer(demo, exported):
    out, summary = exported
    assert json.loads((out / ".zgroup").read_text())["zarr_format"] == 2
    ends = np.asarray(zarr.open_group(str(out), mode="r", zarr_format=2)["meta/episode_ends"][:])
    assert ends.dtype == np.int64 and len(ends) == demo.n_episodes == summary["episodes"]
    assert ends[-1] == summary["steps"]
    cam = json.loads((out / "data" / "cam_front_rgb" / ".zarray").read_text())
    assert cam["zarr_format"] == 2 and cam["chunks"] == [1, 32, 32, 3] and cam["dtype"] == "|u1"
    assert cam["compressor"]["id"] == "imagecodecs_jpegxl"
    low = json.loads((out / "data" / "joint_pos" / ".zarray").read_text())
    assert low["compressor"]["id"] == "blosc" and low["compressor"]["cname"] == "zstd"
    attrs = json.loads((out / ".zattrs").read_text())["robot_rl"]
    assert attrs["resampled"] and attrs["keys"]["ee_quat"]["interp"] == "slerp"
    assert attrs["keys"]["cam_front_rgb"]["interp"] == "hold" and attrs["grid"]["index_stream"] == "action"
    # the camera starts 4 ms after the first action: that grid row is dropped and counted
    assert summary["grid"]["dropped_head_rows"] == demo.n_episodes
    assert not (out.parent / (out.name + ".partial")).exists()


def test_export_values_follow_the_index_grid(demo, exported):
    out, _ = exported
    dp.register_image_codecs()
    root = zarr.open_group(str(out), mode="r", zarr_format=2)
    ends = root["meta/episode_ends"][:]
    lo = 0
    for e, hi in enumerate(ends):
        grid = root["data/timestamp"][lo:hi]
        a, ta = demo.read("action", e)
        np.testing.assert_array_equal(grid, ta[1:])  # grid = action times minus the dropped head
        np.testing.assert_array_equal(root["data/action"][lo:hi], a[1:])
        q, tq = demo.read("ee_quat", e)
        np.testing.assert_allclose(root["data/ee_quat"][lo:hi], sample_at(q, tq, grid, "slerp"), atol=1e-12)
        j, tj = demo.read("joint_pos", e)
        np.testing.assert_allclose(root["data/joint_pos"][lo:hi], sample_at(j, tj, grid, "linear"), atol=1e-12)
        img, ti = demo.read("cam_front_rgb", e)
        held = img[np.searchsorted(ti, grid, side="right") - 1]
        err = np.abs(root["data/cam_front_rgb"][lo:hi].astype(int) - held.astype(int))
        assert err.mean() < 3.0, err.mean()  # JPEG-XL level 90 of already-JPEG frames
        lo = hi


def test_read_like_diffusion_policy_replay_buffer(exported, tmp_path):
    out, summary = exported
    script = tmp_path / "read_replay_buffer.py"
    script.write_text(REPLAY_BUFFER_READER)
    namespace = {"__name__": "replay_buffer_reader"}
    exec(compile(REPLAY_BUFFER_READER, str(script), "exec"), namespace)  # with this venv's zarr 3
    got = json.loads(json.dumps(namespace["read_replay_buffer"](str(out))))
    assert got["episode_ends"][-1] == summary["steps"]
    assert got["keys"]["cam_front_rgb"]["chunks"] == [1, 32, 32, 3]
    if not ZARR2_PYTHON.exists():
        pytest.skip(f"{ZARR2_PYTHON} missing: zarr-python 2 check skipped (bash scripts/test.sh makes .venv-zarr2)")
    z2 = subprocess.run([str(ZARR2_PYTHON), str(script), str(out)], capture_output=True, text=True, timeout=120)
    assert z2.returncode == 0, z2.stderr
    got2 = json.loads(z2.stdout)
    assert got2["zarr"].startswith("2.")
    assert got2["keys"] == got["keys"]


@pytest.mark.parametrize("image_codec", ["jpegxl", "jpeg2k"])
def test_images_open_with_diffusion_policys_own_codec_module(demo, tmp_path, image_codec):
    out = tmp_path / f"{image_codec}.zarr"
    dp.export_store(demo, out, streams=["action", "cam_front_rgb"], image_codec=image_codec, episodes="2:")
    dp.register_image_codecs()
    frames = zarr.open_group(str(out), mode="r", zarr_format=2)["data/cam_front_rgb"][:]
    expected = float(frames.astype(np.float64).sum())
    script = tmp_path / "read_with_dp_codecs.py"
    script.write_text(DP_CODEC_READER)
    pythons = [Path(sys.executable)] + ([ZARR2_PYTHON] if ZARR2_PYTHON.exists() else [])
    for python in pythons:
        run = subprocess.run([str(python), str(script), str(out)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"{python}: {run.stderr}"
        got = json.loads(run.stdout)["keys"]["cam_front_rgb"]
        assert got["compressor"] in ("JpegXl", "Jpeg2k") and got["sum"] == expected, (python, got)
    config = json.loads((out / "data" / "cam_front_rgb" / ".zarray").read_text())["compressor"]
    assert config == ({"id": "imagecodecs_jpegxl", "level": 90, "lossless": False} if image_codec == "jpegxl" else
                      {"id": "imagecodecs_jpeg2k", "level": 50, "verbose": 0})
    if not ZARR2_PYTHON.exists():
        pytest.skip(f"{ZARR2_PYTHON} missing: checked with zarr 3 only (bash scripts/test.sh makes .venv-zarr2)")


def test_import_reads_a_codec_config_as_diffusion_policy_writes_it(demo, tmp_path):
    out = tmp_path / "dp_written.zarr"
    dp.export_store(demo, out, streams=["action", "cam_front_rgb"], episodes="2:")
    zarray = out / "data" / "cam_front_rgb" / ".zarray"
    meta = json.loads(zarray.read_text())
    # get_default_image_compressor() of diffusion_policy's codec module, as its get_config writes it
    meta["compressor"] = {"id": "imagecodecs_jpegxl", "level": None, "effort": 3, "distance": 0.3, "lossless": False,
                          "decodingspeed": 1, "photometric": None, "planar": None, "usecontainer": None,
                          "index": None, "keeporientation": None, "numthreads": None}
    zarray.write_text(json.dumps(meta))
    store = dp.import_store(out, tmp_path / "store.zarr")
    frames = zarr.open_group(str(out), mode="r", zarr_format=2)["data/cam_front_rgb"][:]
    got, _ = store.read("cam_front_rgb", 0)
    assert len(got) == len(frames) and np.abs(got.astype(int) - frames.astype(int)).mean() < 3.0


def test_round_trip(demo, exported, tmp_path):
    out, summary = exported
    back = dp.import_store(out, tmp_path / "back.zarr")
    assert back.n_episodes == demo.n_episodes
    assert sorted(back.streams) == sorted(demo.streams)
    assert back.index_stream == "action"
    assert back.streams["ee_quat"].interp == "slerp" and back.streams["cam_front_rgb"].codec == "jpeg"
    assert back.streams["joint_pos"].units == "rad"
    root = zarr.open_group(str(out), mode="r", zarr_format=2)
    ends = root["meta/episode_ends"][:]
    for e in range(demo.n_episodes):
        m0, m1 = demo.episode_meta(e), back.episode_meta(e)
        for field in ("task", "rig", "source", "success", "reward_labels", "notes"):
            assert m1[field] == m0[field], field
        assert m1["extra"]["imported_from"]["format"] == "diffusion_policy"
        lo = ends[e - 1] if e else 0
        a, t = back.read("action", e)
        np.testing.assert_array_equal(a, root["data/action"][lo:ends[e]])
        np.testing.assert_array_equal(t, root["data/timestamp"][lo:ends[e]])
        q, _ = back.read("ee_quat", e)
        np.testing.assert_allclose(q, root["data/ee_quat"][lo:ends[e]])
        img, _ = back.read("cam_front_rgb", e)
        assert np.abs(img.astype(int) - root["data/cam_front_rgb"][lo:ends[e]].astype(int)).mean() < 3.0


def _write_foreign_buffer(path: Path, lengths=(5, 3, 4)) -> None:
    """A buffer laid out the way diffusion_policy writes one: no timestamps, Jpeg2k images."""
    from imagecodecs.numcodecs import Jpeg2k

    dp.register_image_codecs()
    n = sum(lengths)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    blosc = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
    root.create_array("data/action", shape=(n, 2), chunks=(n, 2), dtype="float32", compressors=blosc)[:] = \
        np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    root.create_array("data/state", shape=(n, 5), chunks=(n, 5), dtype="float64", compressors=blosc)[:] = 0.5
    img = np.zeros((n, 16, 16, 3), np.uint8)
    img[..., 0] = np.arange(n)[:, None, None] * 10
    root.create_array("data/img", shape=img.shape, chunks=(1, 16, 16, 3), dtype="uint8",
                      compressors=Jpeg2k(level=50))[:] = img
    root.create_array("meta/episode_ends", shape=(len(lengths),), chunks=(len(lengths),), dtype="int64",
                      compressors=None)[:] = np.cumsum(lengths)


def test_import_foreign_buffer_synthesizes_times(tmp_path):
    src = tmp_path / "pusht.zarr"
    _write_foreign_buffer(src)
    store = dp.import_store(src, tmp_path / "store.zarr", rate_hz=20, task="push_t")
    assert store.n_episodes == 3 and store.index_stream == "action"
    assert store.streams["img"].codec == "jpeg" and store.streams["img"].interp == "hold"
    assert store.streams["state"].interp == "linear" and store.streams["state"].rate_hz == 20.0
    a, t = store.read("action", 1)
    np.testing.assert_allclose(t, np.arange(3) / 20.0)
    np.testing.assert_array_equal(a, np.arange(10, 16, dtype=np.float32).reshape(3, 2))
    meta = store.episode_meta(2)
    assert meta["source"] == "imported" and meta["task"] == "push_t"
    img, _ = store.read("img", 0)
    assert abs(int(img[4, 0, 0, 0]) - 40) <= 3


def test_foreign_buffer_without_timestamps_needs_its_rate_and_has_no_start_time(tmp_path, capsys):
    from robot_rl.cli import main

    src, out = tmp_path / "pusht.zarr", tmp_path / "store.zarr"
    _write_foreign_buffer(src)
    with pytest.raises(ConfigError, match=r"pusht.zarr: no data/timestamp, so the step rate is unknown; pass the "
                                          r"rate the buffer was recorded at \(rate_hz\)") as err:
        dp.import_store(src, out)
    assert not out.exists()
    suggested = shlex.split(str(err.value).split("`")[1])
    assert suggested[0] == "robot-rl" and main(suggested[1:]) == 0  # the suggestion works when pasted
    store = EpisodeStore.open(out)
    assert store.streams["action"].rate_hz == 10.0 and store.n_episodes == 3
    np.testing.assert_allclose(store.read("action", 1)[1], np.arange(3) / 10.0)
    assert [m["start_time"] for m in store.meta_list()] == ["unknown"] * 3  # not the import time


def test_foreign_buffer_timestamps_give_rate_and_start_time(tmp_path):
    src = tmp_path / "real.zarr"
    _write_foreign_buffer(src)
    t0 = 1767268800.0  # 2026-01-01T12:00:00Z, as diffusion_policy's real-robot buffers stamp steps (Unix time)
    times = np.concatenate([t0 + np.arange(5) / 10, t0 + 60 + np.arange(3) / 10, t0 + 120 + np.arange(4) / 10])
    root = zarr.open_group(str(src), mode="r+", zarr_format=2)
    root.create_array("data/timestamp", shape=(12,), chunks=(12,), dtype="float64")[:] = times
    store = dp.import_store(src, tmp_path / "store.zarr")
    assert store.streams["action"].rate_hz == pytest.approx(10.0, rel=1e-5)  # median step within episodes, not across
    assert [m["start_time"] for m in store.meta_list()] == [
        "2026-01-01T12:00:00.000+00:00", "2026-01-01T12:01:00.000+00:00", "2026-01-01T12:02:00.000+00:00"]
    with pytest.raises(ConfigError, match="rate_hz='fast' is not a number"):
        dp.import_store(src, tmp_path / "bad.zarr", rate_hz="fast")
    with pytest.raises(ConfigError, match="rate_hz=inf must be a positive number"):
        dp.import_store(src, tmp_path / "bad.zarr", rate_hz=float("inf"))


def test_bad_input_errors(demo, exported, tmp_path):
    out, _ = exported
    (tmp_path / "not_a_buffer").mkdir()
    with pytest.raises(StoreError, match="not_a_buffer.*not a diffusion_policy replay buffer"):
        dp.import_store(tmp_path / "not_a_buffer", tmp_path / "x.zarr")
    with pytest.raises(StoreError, match="does not exist"):
        dp.import_store(tmp_path / "missing.zarr", tmp_path / "x.zarr")
    with pytest.raises(StoreError, match="not a diffusion_policy replay buffer"):
        dp.import_store(demo.path, tmp_path / "x.zarr")  # our own (zarr v3) store is not a replay buffer
    with pytest.raises(StoreError, match="already exists"):
        dp.export_store(demo, out)
    with pytest.raises(ConfigError, match="unknown option.*'rate'"):
        dp.export_store(demo, tmp_path / "y.zarr", rate=10)
    with pytest.raises(StaleDataError, match="cam_front_rgb"):
        dp.export_store(demo, tmp_path / "stale.zarr", rate_hz=100, max_staleness={"cam_front_rgb": 0.005})
    assert not (tmp_path / "stale.zarr").exists() and not (tmp_path / "stale.zarr.partial").exists()
    src = tmp_path / "short.zarr"
    _write_foreign_buffer(src)
    zarr.open_group(str(src), mode="r+", zarr_format=2)["meta/episode_ends"][-1] = 99
    with pytest.raises(StoreError, match="data/action has 12 rows but meta/episode_ends ends at 99"):
        dp.import_store(src, tmp_path / "z.zarr")
    with pytest.raises(StoreError, match="data/nope does not exist"):
        dp.import_store(out, tmp_path / "w.zarr", keys=["nope"])


def test_rename_to_umi_keys_and_back(demo, tmp_path):
    out = tmp_path / "umi.zarr"
    summary = dp.export_store(demo, out, streams=["action", "cam_front_rgb"], rename={"cam_front_rgb": "camera0_rgb"},
                              image_codec="jpeg2k", episodes="1:")
    assert sorted(summary["keys"]) == ["action", "camera0_rgb"] and summary["episodes"] == 2
    assert json.loads((out / "data/camera0_rgb/.zarray").read_text())["compressor"]["id"] == "imagecodecs_jpeg2k"
    back = dp.import_store(out, tmp_path / "back.zarr")
    assert sorted(back.streams) == ["action", "cam_front_rgb"]  # the exported stream names come back
    assert back.episode_meta(0)["notes"] == demo.episode_meta(1)["notes"]
    with pytest.raises(ConfigError, match="collide"):
        dp.export_store(demo, tmp_path / "c.zarr", rename={"cam_front_rgb": "action"})


def test_failed_import_leaves_no_store(tmp_path):
    src = tmp_path / "dup_times.zarr"
    _write_foreign_buffer(src)
    root = zarr.open_group(str(src), mode="r+", zarr_format=2)
    root.create_array("data/timestamp", shape=(12,), chunks=(12,), dtype="float64")[:] = 1.0  # not increasing
    with pytest.raises(StoreError, match="timestamps not increasing at row 1"):
        dp.import_store(src, tmp_path / "store.zarr")
    assert not (tmp_path / "store.zarr").exists()


def test_import_umi_zip(exported, tmp_path):
    import zipfile

    out, summary = exported
    zipped = tmp_path / "dataset.zarr.zip"  # how UMI distributes its replay buffers
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as z:
        for f in sorted(out.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(out).as_posix())
    store = dp.import_store(zipped, tmp_path / "from_zip.zarr", keys="action,cam_front_rgb")
    assert store.n_episodes == summary["episodes"] and sorted(store.streams) == ["action", "cam_front_rgb"]
