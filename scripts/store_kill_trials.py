"""kill -9 trials against the episode store (figures in docs/store_integrity.md).

  python scripts/store_kill_trials.py [random_trials=100] [create_trials=30]

1. random points of a recorder's commit/discard cycles; 2. right after "discard, begin the next
episode", at 3 points (no sample yet / actions flushed / frames flushed); 3. random points of a loop
of EpisodeStore.create. After each kill the store is recovered and every committed row is checked
against its episode's tag (the recorders of tests/faults/test_store_faults.py tag every sample).
"""

import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import tests.faults.test_store_faults as faults  # noqa: E402
from robot_rl.core.errors import StoreError  # noqa: E402
from robot_rl.data.recover import recover  # noqa: E402
from robot_rl.data.episode_store import EpisodeStore  # noqa: E402
from tests.data.conftest import small_specs  # noqa: E402

CREATE_LOOP = """
import sys
from robot_rl.data.episode_store import EpisodeStore
from tests.data.conftest import small_specs
print("GO", flush=True)
i = 0
while True:
    EpisodeStore.create(f"{sys.argv[1]}/s{i}.zarr", small_specs())
    i += 1
"""


def fresh_store() -> pathlib.Path:
    path = pathlib.Path(tempfile.mkdtemp()) / "demo.zarr"
    EpisodeStore.create(path, small_specs())
    return path


def misattributed(path) -> int:
    recover(EpisodeStore.open(path, mode="a"))
    try:
        faults.assert_every_row_belongs_to_its_episode(path)
        return 0
    except AssertionError:
        return 1


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def main(random_trials: int = 100, create_trials: int = 30) -> None:
    rng = np.random.default_rng(0)
    bad = 0
    for seed in range(random_trials):
        path = fresh_store()
        proc = faults._spawn(faults.RANDOM_RECORDER, path, seed)
        for _ in range(int(rng.integers(2, 10))):
            proc.stdout.readline()
        time.sleep(float(rng.uniform(0, 0.08)))
        kill(proc)
        bad += misattributed(path)
    print(f"{random_trials} kills at random points of commit/discard cycles: {bad} with rows of another episode")
    bad = 0
    for point in ("begin", "actions", "frames"):
        for _ in range(5):
            path = fresh_store()
            proc = faults._spawn(faults.DISCARD_THEN_CRASH, path, point)
            assert proc.stdout.readline().strip() == b"READY"
            time.sleep(0.3)  # > the recorder's flush_interval_s: its lanes have flushed
            kill(proc)
            bad += misattributed(path)
    print(f"15 kills right after 'discard, begin the next episode' (3 points): {bad} with rows of another episode")
    unusable = mid_create = 0
    for _ in range(create_trials):
        folder = pathlib.Path(tempfile.mkdtemp())
        proc = subprocess.Popen([sys.executable, "-c", CREATE_LOOP, str(folder)], stdout=subprocess.PIPE,
                                cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)})
        proc.stdout.readline()
        time.sleep(float(rng.uniform(0.05, 0.5)))
        kill(proc)
        stores = [p for p in folder.iterdir() if p.name.endswith(".zarr")]
        mid_create += any(p.name.startswith(".") for p in folder.iterdir())
        for p in stores + [folder / f"s{len(stores)}.zarr"]:
            try:
                EpisodeStore.open(p) if p.exists() else EpisodeStore.create(p, small_specs())
            except StoreError:
                unusable += 1
    print(f"{create_trials} kills during EpisodeStore.create loops ({mid_create} mid-create): "
          f"{unusable} unusable store paths")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
