"""`robot-rl data info|validate|recover|view` on a store written by the project's own writer."""

from robot_rl.cli import main
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter

from .conftest import record_episode


def test_info_validate_recover_view(store, store_path, tmp_path, capsys):
    with EpisodeWriter(store) as w:
        record_episode(w, 1.0, success=True)
        record_episode(w, 1.0, t0=3.0, success=False)
    assert main(["data", "info", str(store_path)]) == 0
    out = capsys.readouterr().out
    assert "episodes    2" in out and "50.0% of 2 labelled" in out and "cam_front_rgb" in out
    assert main(["data", "validate", str(store_path)]) == 0
    assert main(["data", "recover", str(store_path)]) == 0
    assert "no interrupted episode" in capsys.readouterr().out
    for suffix in (".gif", ".mp4"):
        video = tmp_path / f"ep1{suffix}"
        assert main(["data", "view", str(store_path), "episode=1", f"video={video}"]) == 0
        assert video.stat().st_size > 1000
    assert EpisodeStore.open(store_path).n_episodes == 2


def test_validate_exit_code_on_problems(store, store_path, capsys):
    with EpisodeWriter(store) as w:
        record_episode(w, 1.0)
    (store_path / "data" / "action" / "c" / "0" / "0").write_bytes(b"junk")
    assert main(["data", "validate", str(store_path)]) == 1
    assert "PROBLEM data/action" in capsys.readouterr().out


def test_missing_store_is_exit_1_with_the_path(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "none.zarr")]) == 1
    assert "none.zarr: does not exist" in capsys.readouterr().err
