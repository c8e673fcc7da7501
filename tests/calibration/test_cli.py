"""`robot-rl calibrate`: subcommands, clear errors, and the synthetic mode end to end."""

import json

from robot_rl.calibration import load_calibration
from robot_rl.cli import main


def test_unknown_subcommand_is_a_clear_error(tmp_path, capsys):
    assert main(["calibrate", "focus", f"out={tmp_path}"]) == 1
    assert "intrinsics" in capsys.readouterr().err


def test_missing_images_names_the_option(tmp_path, capsys):
    assert main(["calibrate", "intrinsics", "camera=wrist", f"out={tmp_path}"]) == 1
    assert "images=" in capsys.readouterr().err


def test_missing_image_folder_names_it(tmp_path, capsys):
    assert main(["calibrate", "intrinsics", "camera=wrist", f"images={tmp_path / 'nope'}", f"out={tmp_path}"]) == 1
    assert "nope" in capsys.readouterr().err


def test_synthetic_intrinsics_writes_a_loadable_calibration(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["calibrate", "intrinsics", "synthetic=true", "progress=false", "calibration_id=syn-1",
                 "synthetic_data.views=10", f"out={out}"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["rms_px"] < 0.3 and abs(res["fx_err_px"]) < 2.0 and abs(res["cx_err_px"]) < 2.0
    cal = load_calibration(out / "calibration" / "panda_twin" / "syn-1")
    assert cal.intrinsics["wrist"].width == 640 and "ground truth" in capsys.readouterr().out
