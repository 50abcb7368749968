import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(autouse=True)
def _lerobot_home(tmp_path_factory, monkeypatch):
    # calibration dirs and caches go to a temp home, never to the user's ~/.cache/huggingface/lerobot
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path_factory.getbasetemp() / "lerobot_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
