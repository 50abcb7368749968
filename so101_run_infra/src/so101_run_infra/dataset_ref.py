"""How every command names a LeRobot dataset: `--dataset.repo_id` and `--dataset.root`, one dataclass that each
command's dataset settings subclass (adding their own fields, or another default repo id), so the flags, their
types and their errors read the same everywhere.

Numpy-only like the rest of this room: LeRobot is imported inside the methods that open a dataset."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class DatasetRef:
    """A LeRobot dataset by repo id and folder (`--<flag>.repo_id`, `--<flag>.root`)."""

    # the dataset's repo id (a local recording's too: LeRobot names its files by it)
    repo_id: str | None = None
    # the dataset's folder; None: $HF_LEROBOT_HOME/<repo_id> (or the Hub, by repo_id)
    root: Path | None = None

    def __post_init__(self) -> None:
        # a Path whether the command line, a saved config or a caller's string gave it: callers join and test it
        if self.root is not None and not isinstance(self.root, Path):
            self.root = Path(self.root)

    def require(self, flag: str = "dataset", root: bool = False) -> "DatasetRef":
        """Itself, or a ValueError naming `--<flag>.repo_id` (and `--<flag>.root` with `root`) when missing."""
        if not self.repo_id:
            raise ValueError(f"--{flag}.repo_id is required: the dataset's repo id (e.g. local/my_recording)")
        if root and self.root is None:
            raise ValueError(f"--{flag}.root is required: the folder of dataset {self.repo_id}")
        return self

    def metadata(self) -> Any:
        """LeRobot's metadata of the dataset (`LeRobotDatasetMetadata`)."""
        from lerobot.datasets import LeRobotDatasetMetadata

        return LeRobotDatasetMetadata(self.repo_id, root=self.root)

    def open(self, **kwargs: Any) -> Any:
        """The `LeRobotDataset` (keyword arguments go to it: episodes, delta_timestamps, video_backend, ...)."""
        from lerobot.datasets import LeRobotDataset

        return LeRobotDataset(self.repo_id, root=self.root, **kwargs)
