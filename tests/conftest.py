import os

import pytest
from clitools import record_twin_dataset

os.environ.setdefault("MUJOCO_GL", "egl")
# commands the tests run (and the demo's and examples' stages they start) fork from a parent that imported LeRobot
# once (so101_devtools.warm_start); SO101_WARM_START=0 runs every one as a plain subprocess
os.environ.setdefault("SO101_WARM_START", "1")


@pytest.fixture(autouse=True)
def _lerobot_home(tmp_path_factory, monkeypatch):
    # calibration dirs and caches go to a temp home, never to the user's ~/.cache/huggingface/lerobot
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path_factory.getbasetemp() / "lerobot_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


GT_SIZE = (64, 80)  # (height, width): small, and not square, to catch transposed layouts


@pytest.fixture(scope="session")
def gt_dataset(tmp_path_factory):
    """Two expert episodes with both cameras and ground-truth depth + segmentation, shared by the slow tests."""
    return record_twin_dataset(tmp_path_factory.mktemp("record") / "gt", 2, 4, GT_SIZE, ground_truth=True)
