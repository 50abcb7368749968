"""How every command names a trained checkpoint: `--policy.path`, one dataclass beside DatasetRef, so the flag, its
type and its error read the same everywhere."""

from dataclasses import dataclass
from pathlib import Path


@dataclass
class CheckpointRef:
    """A pretrained_model folder (`--<flag>.path`): config.json, the weights and the processors' files."""

    # a pretrained_model folder (config.json, the weights and the processors' files); required
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.path is not None and not isinstance(self.path, Path):
            self.path = Path(self.path)

    def require(self, flag: str = "policy") -> Path:
        """The folder, or a ValueError naming `--<flag>.path` when it is missing or not a checkpoint."""
        if self.path is None:
            raise ValueError(f"--{flag}.path is required: a pretrained_model folder (config.json, the weights)")
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"--{flag}.path={self.path} holds no config.json: not a pretrained_model folder")
        return self.path
