"""WindowDataset: item shapes/dtypes, images decoded in DataLoader workers, resize and augmentation."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.augment import ImageAugment
from robot_rl.data.dataset import FrameCache, FrameReader, WindowDataset, batch_loader, make_datasets
from robot_rl.data.sampler import WindowSampler
from robot_rl.data.schema import StreamSpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter

HW = (12, 16)


def write_store(path, n_episodes=3, steps=12, cameras=2):
    """Actions at 10 Hz, joint_pos (3,) and gripper (1,) at 50 Hz, `cameras` RGB cameras at 30 Hz
    whose pixels hold the frame's row in the store (mod 256), and one depth camera."""
    streams = [StreamSpec("action", "float32", (4,), 10.0), StreamSpec("joint_pos", "float32", (3,), 50.0),
               StreamSpec("gripper", "float32", (1,), 50.0),
               StreamSpec("depth", "uint16", (*HW, 1), 30.0, codec="png", interp="hold")]
    streams += [StreamSpec(f"cam{i}", "uint8", (*HW, 3), 30.0, codec="png", interp="hold") for i in range(cameras)]
    store = EpisodeStore.create(path, streams)
    frame = 0
    with EpisodeWriter(store) as writer:
        for e in range(n_episodes):
            writer.begin_episode({"success": e % 2 == 0})
            duration = steps / 10.0
            for t in np.arange(0, duration + 0.02, 1 / 50):
                writer.append("joint_pos", np.full(3, t, np.float32), t)
                writer.append("gripper", np.full(1, -t, np.float32), t)
            for t in np.arange(0, duration + 0.02, 1 / 30):
                for i in range(cameras):
                    writer.append(f"cam{i}", np.full((*HW, 3), frame % 256, np.uint8), t)
                writer.append("depth", np.full((*HW, 1), 1000 + frame, np.uint16), t)
                frame += 1
            for k in range(steps):
                writer.append("action", np.full(4, k, np.float32), k / 10.0 + 0.01)
            writer.commit()
    return EpisodeStore.open(path)


def make_spec(cameras=2, size=HW, depth=False):
    obs = [FeatureSpec("state", (4,), stream="joint_pos+gripper")]
    obs += [FeatureSpec(f"cam{i}", (3, *size), kind="rgb", normalize="image") for i in range(cameras)]
    if depth:
        obs.append(FeatureSpec("depth", (1, *size), kind="depth", normalize="image"))
    return PolicySpec(obs=tuple(obs), action=FeatureSpec("action", (4,)), n_obs_steps=2, horizon=8,
                      n_action_steps=4)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("ds") / "store")


def test_state_only_item_shapes_and_dtypes(store):
    ds = WindowDataset(WindowSampler(store, make_spec(cameras=0)))
    item = ds[0]
    assert set(item) == {"state", "action"}
    assert item["state"].shape == (2, 4) and item["state"].dtype == torch.float32
    assert item["action"].shape == (8, 4) and item["action"].dtype == torch.float32
    np.testing.assert_allclose(item["state"][:, 3], -item["state"][:, 0])  # joint_pos + gripper


def test_two_camera_item_holds_the_aligned_frames(store):
    sampler = WindowSampler(store, make_spec(cameras=2))
    ds = WindowDataset(sampler)
    for i in (0, 5, len(ds) - 1):
        item = ds[i]
        rows = sampler.image_rows["cam0"][sampler.rows(i)[:2]]
        for key in ("cam0", "cam1"):
            assert item[key].shape == (2, 3, *HW) and item[key].dtype == torch.uint8
            np.testing.assert_array_equal(item[key][:, 0, 0, 0].numpy(), rows % 256)


def test_dataloader_with_two_workers_matches_direct_reads(store):
    ds = WindowDataset(WindowSampler(store, make_spec(cameras=2)))
    ds[0]  # the parent opened the store first: workers must open their own
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b["action"]) for b in batches) == len(ds)
    assert batches[0]["cam1"].shape == (4, 2, 3, *HW)
    torch.testing.assert_close(batches[1]["cam0"][2], ds[6]["cam0"])
    torch.testing.assert_close(batches[1]["action"][2], ds[6]["action"])


def test_frames_are_resized_to_the_spec_and_depth_is_scaled(store):
    ds = WindowDataset(WindowSampler(store, make_spec(cameras=1, size=(6, 8), depth=True)), depth_scale=1e-3)
    item = ds[3]
    assert item["cam0"].shape == (2, 3, 6, 8)
    assert item["depth"].shape == (2, 1, 6, 8) and item["depth"].dtype == torch.float32
    assert 1.0 <= float(item["depth"].min()) < 2.0


def test_augment_crops_the_same_way_over_time_and_centres_in_eval(store):
    frames = torch.arange(2 * 3 * 12 * 16, dtype=torch.int64).reshape(2, 3, 12, 16).remainder(256).to(torch.uint8)
    aug = ImageAugment(crop=(8, 10), brightness=0.2, contrast=0.2, saturation=0.2)
    out = aug(frames, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 8, 10) and out.dtype == torch.uint8
    torch.testing.assert_close(aug.eval()(frames), frames[..., 2:10, 3:13])
    train, val = make_datasets(store, make_spec(cameras=1), val_ratio=0.34, seed=0, augment=ImageAugment(crop=(8, 8)))
    assert train[0]["cam0"].shape == (2, 3, 8, 8) and not val.augment.train
    assert set(train.sampler.episodes).isdisjoint(val.sampler.episodes)


def test_channel_mismatch_is_a_clear_error(store):
    bad = PolicySpec(obs=(FeatureSpec("cam0", (1, *HW), kind="rgb"),), action=FeatureSpec("action", (4,)))
    with pytest.raises(ConfigError, match="cam0 wants 1 channels"):
        WindowDataset(WindowSampler(store, bad))


def test_batched_indexing_equals_stacked_items(store):
    ds = WindowDataset(WindowSampler(store, make_spec(cameras=2)))
    batch = ds[[3, 0, 7, 3]]
    for key in ("state", "cam0", "cam1", "action"):
        torch.testing.assert_close(batch[key], torch.stack([ds[i][key] for i in (3, 0, 7, 3)]))


def test_batch_loader_with_two_workers_covers_every_window_once(store):
    ds = WindowDataset(WindowSampler(store, make_spec(cameras=2)), augment=ImageAugment(crop=(8, 8)))
    batches = list(batch_loader(ds, batch_size=8, shuffle=True, num_workers=2, seed=0))
    assert sum(len(b["action"]) for b in batches) == len(ds)
    assert batches[0]["cam0"].shape == (8, 2, 3, 8, 8) and batches[0]["cam0"].dtype == torch.uint8
    actions = torch.cat([b["action"] for b in batches])
    expected = torch.stack([ds[i]["action"] for i in range(len(ds))])
    assert sorted(map(tuple, actions[:, 0].tolist())) == sorted(map(tuple, expected[:, 0].tolist()))


@pytest.mark.parametrize("codec,dtype,shape", [("jpeg", "uint8", (12, 16, 3)), ("png", "uint16", (12, 16)),
                                               ("zstd", "uint16", (12, 16))])
def test_frame_reader_fast_path_matches_zarr_and_sees_rewritten_shards(tmp_path, codec, dtype, shape):
    rng = np.random.default_rng(0)
    store = EpisodeStore.create(tmp_path / "s", [StreamSpec("cam", dtype, shape, 30.0, codec=codec, interp="hold")])
    frames = (rng.integers(0, 200, size=(100, *shape)) + np.arange(100).reshape(-1, *[1] * len(shape))).astype(dtype)
    fast = None
    with EpisodeWriter(store) as writer:
        for start, n in ((0, 40), (40, 60)):  # the second episode rewrites the first shard (64 frames)
            writer.begin_episode()
            for i in range(start, start + n):
                writer.append("cam", frames[i], i / 30)
            writer.commit()
            array = EpisodeStore.open(tmp_path / "s").values("cam")
            fast = fast or FrameReader(array, tmp_path / "s")  # keeps its cached shard index
            rows = np.array([0, 5, 5, 39, start + n - 1, 2, 63 if start else 1])
            assert fast.fast
            got = fast.read(rows)
            np.testing.assert_array_equal(got, FrameReader(array, None).read(rows))
            if codec != "jpeg":
                np.testing.assert_array_equal(got, frames[rows])


def test_corrupt_shard_is_a_clear_error(tmp_path):
    store = EpisodeStore.create(tmp_path / "s", [StreamSpec("cam", "uint8", (12, 16, 3), 30.0, codec="jpeg")])
    with EpisodeWriter(store) as writer:
        writer.begin_episode()
        for i in range(10):
            writer.append("cam", np.full((12, 16, 3), i, np.uint8), i / 30)
        writer.commit()
    shard = tmp_path / "s" / "data" / "cam" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[:64] = bytes(64)  # clobber the first frame's JPEG header
    shard.write_bytes(bytes(data))
    reader = FrameReader(EpisodeStore.open(tmp_path / "s").values("cam"), tmp_path / "s")
    with pytest.raises(StoreError, match=r"cam/c/0/0/0/0: cannot read frame 0"):
        reader.read(np.array([0]))


def _counting_decodes(reader, monkeypatch):
    decoded = []
    decode_rows = reader.decode_rows

    def counting(rows):
        decoded.extend(int(r) for r in rows)
        return decode_rows(rows)

    monkeypatch.setattr(reader, "decode_rows", counting)
    return decoded


def test_cached_frames_are_decoded_once_and_equal_fresh_reads(store, monkeypatch):
    array = store.values("cam0")
    reader = FrameReader(array, store.path, FrameCache(2**20))
    decoded = _counting_decodes(reader, monkeypatch)
    rows = np.array([3, 1, 3, 7])
    first = reader.read(rows)
    again = reader.read(np.array([7, 1, 3]))
    assert sorted(decoded) == [1, 3, 7]            # the second read decoded nothing
    np.testing.assert_array_equal(first, FrameReader(array, store.path).read(rows))
    np.testing.assert_array_equal(again, first[[3, 1, 0]])


def test_frames_past_the_cache_bound_are_decoded_again(store, monkeypatch):
    frame_bytes = int(np.prod(store.values("cam0").shape[1:]))
    reader = FrameReader(store.values("cam0"), store.path, FrameCache(2 * frame_bytes))
    decoded = _counting_decodes(reader, monkeypatch)
    reader.read(np.arange(5))
    assert reader.cache.nbytes == 2 * frame_bytes     # the bound holds
    got = reader.read(np.arange(5))
    assert sorted(decoded) == [0, 1, 2, 2, 3, 3, 4, 4]
    np.testing.assert_array_equal(got, FrameReader(store.values("cam0"), store.path).read(np.arange(5)))


def test_dataset_items_are_the_same_with_and_without_the_frame_cache(store):
    sampler = WindowSampler(store, make_spec(cameras=2))
    cached, uncached = WindowDataset(sampler), WindowDataset(sampler, frame_cache_mb=0)
    for index in ([0, 5, 9], [9, 0, 3], [5]):
        a, b = cached[index], uncached[index]
        for key in b:
            torch.testing.assert_close(a[key], b[key])
    assert uncached._image_arrays()["cam0"].cache is None
    with pytest.raises(ConfigError, match="frame_cache_mb=-1"):
        WindowDataset(sampler, frame_cache_mb=-1)
