"""obs=image|state: the observation features each preset gives a policy, that an obs=image checkpoint reads no
privileged stream anywhere, and that obs= given with a checkpoint must agree with it (one clear line)."""

import pytest
import yaml

from robot_rl.cli import main
from robot_rl.control.rig import load_rig
from robot_rl.commands.train import IMAGE_MODEL, preset_overrides
from robot_rl.core.config import compose, load_yaml, to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.learning.run_setup import twin_env_factory
from robot_rl.learning.spec_builder import PRIVILEGED_STREAMS, check_obs, checkpoint_spec, spec_section

PROPRIO = "ee_pos+ee_quat+gripper_pos"
TINY_TRAIN = ["train.steps=2", "train.eval_every=0", "train.batch_size=4", "train.num_workers=0",
              "train.warmup_steps=1", "train.checkpoint_every=2", "model.mlp_hidden_dim=32", "model.mlp_num_blocks=1",
              "model.conv_channels=[8,8]", "model.image_size=32", "model.num_keypoints=4", "model.state_dims=[16]", "model.step_embed_dim=16", "spec.horizon=8",
              "spec.n_action_steps=4"]


def features(overrides):
    cfg = compose("train", overrides)
    return spec_section(cfg.obs, to_plain(cfg.spec), to_plain(cfg.task) if cfg.get("task") else None)["obs"]


def test_obs_state_reads_proprio_and_the_privileged_task_state():
    assert features([]) == {"state": {"stream": f"{PROPRIO}+task_state"}}
    assert features(["obs=state"]) == features([])


def test_obs_image_reads_proprio_and_both_twin_cameras():
    assert features(["obs=image", "task=lift"]) == {"state": {"stream": PROPRIO},
                                                    "front": {"stream": "cam_front_rgb", "kind": "rgb"},
                                                    "wrist": {"stream": "cam_wrist_rgb", "kind": "rgb"}}


def test_obs_image_on_a_gymnasium_task_reads_its_rendered_frame():
    feats = features(["obs=image", "task=gym", "task.id=PandaReach-v3", "++spec.obs.state.stream=observation"])
    assert feats == {"state": {"stream": "observation"}, "render": {"stream": "cam_render_rgb", "kind": "rgb"}}


def test_spec_obs_overrides_change_add_and_drop_the_presets_features():
    feats = features(["obs=image", "++spec.obs.wrist=null", "++spec.obs.front.stream=cam_wrist_rgb"])
    assert feats == {"state": {"stream": PROPRIO}, "front": {"stream": "cam_wrist_rgb", "kind": "rgb"}}
    with pytest.raises(ConfigError, match="leaves the policy no observation"):
        features(["++spec.obs.state=null"])


def test_obs_image_picks_the_image_model_unless_model_is_given():
    assert preset_overrides(["obs=image", "store=x"]) == [f"model={IMAGE_MODEL}", "obs=image", "store=x"]
    assert preset_overrides(["obs=image", "model=diffusion_unet"]) == ["obs=image", "model=diffusion_unet"]
    assert preset_overrides(["obs=state"]) == ["obs=state"]


def spec_of(*streams):
    obs = tuple(FeatureSpec(f"f{i}", (3, 8, 8) if s.startswith("cam_") else (3,), stream=s,
                            kind="rgb" if s.startswith("cam_") else "low_dim") for i, s in enumerate(streams))
    return PolicySpec(obs=obs, action=FeatureSpec("action", (7,)))


@pytest.mark.parametrize("streams, obs, message", [
    ((PROPRIO, "cam_front_rgb"), "state",
     r"^obs=state: checkpoint ck reads cameras cam_front_rgb \(image observations\); use obs=image or leave obs= out$"),
    ((f"{PROPRIO}+task_state",), "image",
     r"^obs=image: checkpoint ck reads no camera and privileged task_state \(state observations\); use obs=state or "
     r"leave obs= out$"),
    ((f"{PROPRIO}+task_state", "cam_front_rgb"), "image",
     r"^obs=image: checkpoint ck reads cameras cam_front_rgb and privileged task_state \(image \+ privileged state "
     r"observations\); leave obs= out$"),
])
def test_a_mismatched_obs_is_one_line_naming_the_checkpoint_and_what_it_reads(streams, obs, message):
    with pytest.raises(ConfigError, match=message):
        check_obs(obs, spec_of(*streams), "ck")


def test_a_matching_or_absent_obs_passes():
    check_obs("image", spec_of(PROPRIO, "cam_front_rgb"), "ck")
    check_obs("state", spec_of(f"{PROPRIO}+task_state"), "ck")
    check_obs(None, spec_of(f"{PROPRIO}+task_state", "cam_front_rgb"), "ck")


def test_an_image_policys_env_has_cameras_and_no_privileged_state():
    env = twin_env_factory({"name": "reach", "params": {}}, spec_of(PROPRIO, "cam_front_rgb"))()
    try:
        obs, _ = env.reset(seed=0)
        assert "cam_front_rgb" in obs and not set(PRIVILEGED_STREAMS) & set(obs)
    finally:
        env.close()


def small_cameras(d, size=32):
    """The twin's calibration with both cameras at size x size (intrinsics scaled): the same streams, less rendering."""
    cal = load_yaml(load_rig("panda_twin").calibration)
    for cam in cal["cameras"].values():
        s = size / cam["width"]
        cam |= {"width": size, "height": size, "intrinsics": {k: float(v) * s for k, v in cam["intrinsics"].items()}}
    path = d / "cameras.yaml"
    path.write_text(yaml.safe_dump(cal))
    return path


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory):
    """`robot-rl collect obs=image` (2 short lift demos, 32 x 32 cameras) -> `robot-rl train obs=image` (2 steps)."""
    d = tmp_path_factory.mktemp("obs_image")
    store = d / "demos.zarr"
    assert main(["collect", "task=lift", "obs=image", "episodes=2", "task.params.time_limit=2.0", f"store={store}",
                 f"robot.calibration={small_cameras(d)}", f"out={d / 'collect'}", "progress=false"]) == 0
    assert main(["train", f"store={store}", "obs=image", f"out={d / 'train'}", *TINY_TRAIN, "progress=false"]) == 0
    return store, d / "train" / "checkpoints" / "best"


def test_collect_obs_image_records_the_cameras(image_checkpoint):
    store, _ = image_checkpoint
    assert {"cam_front_rgb", "cam_wrist_rgb"} <= set(EpisodeStore.open(store).streams)


def test_an_obs_image_checkpoint_reads_no_privileged_stream_anywhere(image_checkpoint):
    _, ckpt = image_checkpoint
    config = load_yaml(ckpt / "config.yaml")
    spec = checkpoint_spec(ckpt)
    read = {s for f in spec.obs for s in f.streams}
    assert read == {"ee_pos", "ee_quat", "gripper_pos", "cam_front_rgb", "cam_wrist_rgb"}
    assert not read & set(PRIVILEGED_STREAMS)
    assert {f.key: f.kind for f in spec.images} == {"front": "rgb", "wrist": "rgb"}
    assert "task_state" not in str(config["spec"])   # the run config saved beside it names the same features
    assert config["obs"] == "image" and config["model"]["image_encoder"] == "conv"


@pytest.mark.parametrize("command, key", [("eval", "policy"), ("finetune", "policy"), ("distill", "teacher"),
                                          ("deploy", "policy")])
def test_commands_loading_the_image_checkpoint_refuse_obs_state(image_checkpoint, tmp_path, capsys, command, key):
    _, ckpt = image_checkpoint
    assert main([command, f"{key}={ckpt}", "task=lift", "obs=state", f"out={tmp_path / command}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"robot-rl {command}: error: obs=state: checkpoint {ckpt} reads cameras cam_front_rgb, "
                   "cam_wrist_rgb (image observations); use obs=image or leave obs= out")
    assert not (tmp_path / command).exists()


def test_collect_refuses_obs_image_without_cameras(capsys):
    assert main(["collect", "obs=image", "cameras=false"]) == 1
    assert "cameras=false: obs=image records the cameras; drop cameras=false or use obs=state" in capsys.readouterr().err


def rig_store(path, steps=12):
    """What a real rig records: proprio, two cameras and the action, no task_state."""
    import numpy as np

    from robot_rl.data.schema import StreamSpec
    from robot_rl.data.writer import EpisodeMeta, EpisodeWriter

    streams = [StreamSpec("action", "float32", (7,), 10.0), StreamSpec("ee_pos", "float64", (3,), 10.0),
               StreamSpec("ee_quat", "float64", (4,), 10.0, interp="slerp"),
               StreamSpec("gripper_pos", "float64", (1,), 10.0)] + [
        StreamSpec(f"cam_{c}_rgb", "uint8", (16, 16, 3), 10.0, codec="jpeg", interp="hold") for c in ("front", "wrist")]
    store = EpisodeStore.create(path, streams)
    rng = np.random.default_rng(0)
    with EpisodeWriter(store) as w:
        for e in range(2):
            w.begin_episode(EpisodeMeta(task="rig_pick", source="teleop", rig="my_rig"))
            for i in range(steps):
                for s in streams:
                    if s.name == "ee_quat":
                        value = np.array([1.0, 0, 0, 0])
                    elif s.codec == "jpeg":
                        value = rng.integers(0, 255, s.shape)
                    else:
                        value = np.full(s.shape, 0.01 * i + e)
                    w.append(s.name, value.astype(s.dtype), e * 10.0 + i / 10.0)
            w.commit(success=True)
    return path


def test_train_on_a_rig_store_without_task_state_names_obs_image_and_that_works(tmp_path, capsys):
    store = rig_store(tmp_path / "rig.zarr")
    assert main(["train", f"store={store}", f"out={tmp_path / 'a'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stream 'task_state' is not in" in err
    assert err.endswith("this store has no privileged task_state (a real rig's): train on its cameras with obs=image")
    assert main(["train", f"store={store}", "obs=image", f"out={tmp_path / 'b'}", *TINY_TRAIN, "progress=false"]) == 0
    read = {s for f in checkpoint_spec(tmp_path / "b" / "checkpoints" / "best").obs for s in f.streams}
    assert read == {"ee_pos", "ee_quat", "gripper_pos", "cam_front_rgb", "cam_wrist_rgb"}
