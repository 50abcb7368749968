"""`so101-action-error`: a checkpoint's held-out action error on a recording it never trained on.

Why: 20 rollouts per look give success with a 95% interval some 40 points wide, and a policy that learns slowly
reads 0/20 for a long time whatever it is learning. The error of the action chunk it predicts against the one the
expert recorded, on frames of episodes no training used, moves long before success does and costs no simulation.

What: for every `--stride`-th frame of each episode (the stock LeRobot sample, with the action chunk the policy
trains on, `resolve_delta_timestamps`), the checkpoint's own preprocessor, then

- `action_mae`: the mean absolute difference, in the recording's action units (degrees; the gripper 0-100),
  between `predict_action_chunk` through the checkpoint's postprocessor and the expert's actions, over the first
  `n_action_steps` steps (those a rollout executes) that are not past the episode's end; also per joint;
- `hold_mae`: the same error for a chunk that holds the current joint positions (`observation.state` repeated), the
  floor a policy that learned anything beats; only where the state names the action's joints (position targets);
- `loss`: the policy's own training loss (`forward`) on the same batches, as `lerobot-train` reports it; for
  flow-matching policies it draws noise and times from the torch generator seeded by `--seed` (or the policy's own
  `inference_noise_seed`, drawn per batch), so checkpoints scored with the same `--stride` and `--batch_size` see
  the same draws.

    so101-action-error --policy.path=outputs/robust_twin/segvla_s1/checkpoints/002600/pretrained_model \\
        --dataset.repo_id=local/heldout_unseen --dataset.root=outputs/data/heldout_unseen \\
        --output=outputs/robust_twin/action_error/segvla_s1_002600_unseen.json
"""

import bisect
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lerobot.configs import parser

from so101_run_infra.atomic import write_text
from so101_run_infra.checkpoint_ref import CheckpointRef
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.dataset_ref import DatasetRef

logger = logging.getLogger(__name__)


@dataclass
class HeldOutDatasetConfig(DatasetRef):
    """The held-out recording: --dataset.root (its folder) is required."""

    # the recording's repo id
    repo_id: str = "local/heldout"


@dataclass
class ActionErrorConfig:
    # the trained checkpoint (--policy.path: its pretrained_model folder); required
    policy: CheckpointRef = field(default_factory=CheckpointRef)
    # a recording from episode seeds the policy never trained on, with the inputs the policy reads
    dataset: HeldOutDatasetConfig = field(default_factory=HeldOutDatasetConfig)
    # every stride-th frame of each episode is scored (a 150-frame episode: 15 frames at 10)
    stride: int = 10
    batch_size: int = 16
    # seeds the noise and times of a flow-matching policy's loss and its sampling
    seed: int = 0
    device: str = "cpu"
    # where the scores go (JSON); None: printed only
    output: Path | None = None
    # inputs read from another episode's frame (the same moment of the episode half the recording away: another cube
    # pose, the same look), the others from the scored frame: how far the error rises says how much the policy reads
    # them (e.g. '[observation.images.front,observation.images.wrist]'; hold_mae holds the state as given); empty:
    # as recorded
    swap_keys: list[str] = field(default_factory=list)
    # another report of this command on the same frames (a JSON --output): the mean per-episode difference of the
    # action error, this one minus that one, with a 95% paired bootstrap interval over the episodes
    compare_to: Path | None = None


def frame_indices(episode_bounds: list[tuple[int, int]], stride: int) -> list[int]:
    """Every `stride`-th frame of each episode, from its first: dataset indices."""
    if stride < 1:
        raise ValueError(f"--stride={stride}: expected a whole number >= 1")
    return [i for start, stop in episode_bounds for i in range(start, stop, stride)]


def partner_indices(episode_bounds: list[tuple[int, int]], indices: list[int]) -> list[int]:
    """For each scored frame, the frame at the same relative position in the episode half the recording away
    (episode k's partner is episode k + E // 2 of E, cyclically): another episode by construction, whatever the
    episodes' lengths. Where every episode has the same length (so101-twin-record's do) and E is even, it is the
    frame half the scored list away, the pairing this command used before, so earlier reports stay comparable."""
    episodes = [(start, stop) for start, stop in episode_bounds if stop > start]
    if len(episodes) < 2:
        raise ValueError(f"--swap_keys needs a recording of 2 or more episodes to swap between; it has {len(episodes)}")
    starts = [start for start, _ in episodes]
    partners = []
    for i in indices:
        k = bisect.bisect_right(starts, i) - 1
        (start, stop), (other, other_stop) = episodes[k], episodes[(k + len(episodes) // 2) % len(episodes)]
        # floor((i - start) / length * other_length) < other_length: inside the other episode
        partners.append(other + (i - start) * (other_stop - other) // (stop - start))
    return partners


def chunk_abs_error(predicted: torch.Tensor, expert: torch.Tensor, is_pad: torch.Tensor, steps: int) -> torch.Tensor:
    """Per joint, the summed |predicted - expert| over the first `steps` steps not past the episode's end, and the
    count of those steps: shapes (B, T, A), (B, T, A), (B, T) -> (A,) sums, () count."""
    if predicted.shape[-1] != expert.shape[-1] or predicted.shape[0] != expert.shape[0]:
        raise ValueError(f"predicted actions {tuple(predicted.shape)} do not match the expert's {tuple(expert.shape)}")
    steps = min(steps, predicted.shape[1], expert.shape[1])
    valid = (~is_pad[:, :steps]).to(predicted.dtype).unsqueeze(-1)  # (B, steps, 1)
    diff = (predicted[:, :steps] - expert[:, :steps]).abs() * valid  # (B, steps, A)
    return diff.sum(dim=(0, 1)), valid.sum()


def load_batch(
    dataset, indices: list[int], start: int, size: int, swap_keys: list[str], partners: list[int] | None = None
) -> tuple[dict, int]:
    """The samples of indices[start:start + size] stacked, with `swap_keys` taken from the samples at the same places
    of `partners` (partner_indices); and how many samples."""
    items = [dataset[i] for i in indices[start : start + size]]
    if swap_keys:
        if partners is None or len(partners) != len(indices):
            raise ValueError("swapping inputs needs a partner frame for every scored frame (partner_indices)")
        for item, partner_index in zip(items, partners[start : start + size], strict=True):
            partner = dataset[partner_index]
            item.update({key: partner[key] for key in swap_keys})
    batch = {k: torch.stack([it[k] for it in items]) for k, v in items[0].items() if isinstance(v, torch.Tensor)}
    batch["task"] = [it["task"] for it in items]
    return batch, len(items)


def held_positions(batch: dict, expert: torch.Tensor, same_joints: bool) -> torch.Tensor | None:
    """The chunk that holds the current joint positions: the last `observation.state` repeated, (B, A) or
    (B, n_obs, A) -> the expert's (B, T, A); None where the state is not the action's joints."""
    state = batch.get("observation.state")
    if not same_joints or state is None:
        return None
    state = state[:, -1] if state.ndim == 3 else state
    return state.to(torch.float64).unsqueeze(1).expand_as(expert)


def load_checkpoint(path: Path, device: str):
    """The policy, its preprocessor and postprocessor, as lerobot-eval loads them."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies import get_policy_class, make_pre_post_processors

    if path is None or not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"--policy.path={path}: expected a pretrained_model folder with a config.json")
    config = PreTrainedConfig.from_pretrained(path)
    config.pretrained_path = Path(path)
    config.device = device
    policy = get_policy_class(config.type).from_pretrained(path, config=config).eval()
    if not hasattr(policy, "predict_action_chunk"):
        raise TypeError(f"--policy.path={path}: a {config.type} policy predicts no action chunk")
    pre, post = make_pre_post_processors(
        config, pretrained_path=str(path), preprocessor_overrides={"device_processor": {"device": device}}
    )
    return config, policy, pre, post


def check_inputs(cfg: ActionErrorConfig, reads: dict, features: dict) -> None:
    """Every input the policy reads, and every key to swap, is in the recording."""
    missing = sorted(k for k in reads if k not in features)
    unknown = sorted(set(cfg.swap_keys) - set(features))
    if any(not k.startswith("observation.") for k in cfg.swap_keys):
        raise ValueError(f"--swap_keys={cfg.swap_keys}: only inputs (observation.*) are swapped, not the targets")
    if unknown:
        raise KeyError(f"--swap_keys: {unknown} are not in {cfg.dataset.root}; it has {sorted(features)}")
    if missing:
        raise KeyError(
            f"{cfg.dataset.root}: the policy reads {missing}, which the recording does not hold; it has"
            f" {sorted(k for k in features if k.startswith('observation.'))}"
        )


def add_per_episode(totals: dict, episodes: list[int], predicted, expert, is_pad, steps: int) -> None:
    """Adds each sample's summed error over joints and scored steps, and its step count, to its episode's."""
    for row, episode in enumerate(episodes):
        s, c = chunk_abs_error(predicted[row : row + 1], expert[row : row + 1], is_pad[row : row + 1], steps)
        total = totals.setdefault(episode, [0.0, 0.0])
        total[0] += float(s.sum())
        total[1] += float(c) * s.numel()


def score(cfg: ActionErrorConfig) -> dict:
    from lerobot.datasets.factory import resolve_delta_timestamps

    if cfg.dataset.root is None or not Path(cfg.dataset.root).is_dir():
        raise NotADirectoryError(f"--dataset.root={cfg.dataset.root} is not a folder (a held-out recording)")
    config, policy, pre, post = load_checkpoint(cfg.policy.path, cfg.device)
    meta = cfg.dataset.metadata()
    check_inputs(cfg, config.input_features, meta.features)
    dataset = cfg.dataset.open(delta_timestamps=resolve_delta_timestamps(config, meta))
    bounds = [(int(ep["dataset_from_index"]), int(ep["dataset_to_index"])) for ep in meta.episodes]
    indices = frame_indices(bounds, cfg.stride)
    partners = partner_indices(bounds, indices) if cfg.swap_keys else None
    executed = int(getattr(config, "n_action_steps", 1))
    names = meta.features["action"].get("names") or [f"a{i}" for i in range(meta.features["action"]["shape"][0])]
    sums, count, losses = torch.zeros(len(names), dtype=torch.float64), 0.0, []
    same_joints = meta.features.get("observation.state", {}).get("names") == names
    hold_sums, per_episode = torch.zeros(len(names), dtype=torch.float64), {}
    torch.manual_seed(cfg.seed)
    for start in range(0, len(indices), cfg.batch_size):
        batch, n = load_batch(dataset, indices, start, cfg.batch_size, cfg.swap_keys, partners)
        expert, is_pad = batch["action"], batch.get("action_is_pad")
        if expert.ndim == 2:  # a one-step policy: its sample holds the one action
            expert = expert.unsqueeze(1)
        if is_pad is None:
            is_pad = torch.zeros(expert.shape[:2], dtype=torch.bool)
        with torch.no_grad():
            processed = pre(batch)
            loss = policy.forward(processed)[0]
            chunk = policy.predict_action_chunk(processed)  # (B, T, A), normalised
            predicted = post(chunk).to("cpu", torch.float64)
        losses.append((float(loss), n))
        s, c = chunk_abs_error(predicted, expert.to(torch.float64), is_pad, executed)
        sums += s
        count += float(c)
        add_per_episode(per_episode, batch["episode_index"].tolist(), predicted, expert.double(), is_pad, executed)
        hold = held_positions(batch, expert, same_joints)
        if hold is not None:
            hold_sums += chunk_abs_error(hold, expert.to(torch.float64), is_pad, executed)[0]
        logger.info("held-out action error: %d/%d frames", min(start + cfg.batch_size, len(indices)), len(indices))
    if count == 0:
        raise ValueError(f"{cfg.dataset.root}: no frame to score (stride {cfg.stride}, {len(bounds)} episodes)")
    per_joint, hold = (sums / count).tolist(), (hold_sums / count).tolist() if same_joints else None
    return {
        "policy_path": str(cfg.policy.path),
        "dataset": str(cfg.dataset.root),
        "episodes": len(bounds),
        "frames": len(indices),
        "stride": cfg.stride,
        "steps_scored": executed,
        "action_mae": sum(per_joint) / len(per_joint),
        "action_mae_per_joint": dict(zip(names, per_joint, strict=True)),
        "action_mae_per_episode": {str(ep): total / n for ep, (total, n) in sorted(per_episode.items()) if n},
        "loss": sum(v * n for v, n in losses) / sum(n for _, n in losses),
        "hold_mae": sum(hold) / len(hold) if hold else None,
        "hold_mae_per_joint": dict(zip(names, hold, strict=True)) if hold else None,
        "seed": cfg.seed,
        "swapped_keys": list(cfg.swap_keys),
    }


def difference(report: dict, other_path: Path) -> dict:
    """This report's action error minus another's on the same frames: the mean over episodes, with a 95% paired
    bootstrap interval (so101_run_infra.stats)."""
    from so101_run_infra.stats import paired_bootstrap

    if not other_path.is_file():
        raise FileNotFoundError(f"--compare_to={other_path}: no such report")
    other = json.loads(other_path.read_text())
    mine, theirs = report["action_mae_per_episode"], other.get("action_mae_per_episode")
    same = {k: report[k] == other.get(k) for k in ("dataset", "stride", "steps_scored", "frames")}
    if theirs is None or set(theirs) != set(mine) or not all(same.values()):
        raise ValueError(
            f"--compare_to={other_path}: not scored on the same frames (differs in"
            f" {[k for k, v in same.items() if not v] or ['its episodes']}); score both with the same recording,"
            " --stride and checkpoint chunk length"
        )
    d = paired_bootstrap([mine[k] for k in sorted(mine)], [theirs[k] for k in sorted(mine)])
    return {"compared_to": str(other_path), "mean": d.mean, "low": d.low, "high": d.high, "text": str(d)}


def save(output: Path | None, report: dict) -> None:
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        write_text(Path(output), json.dumps(report, indent=2) + "\n")
        print(f"wrote {output}")


@parser.wrap()
def action_error_cli(cfg: ActionErrorConfig) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if cfg.compare_to is not None and not Path(cfg.compare_to).is_file():  # before the scoring, not after
        raise FileNotFoundError(f"--compare_to={cfg.compare_to}: no such report")
    report = score(cfg)
    print(
        f"held-out action error of {cfg.policy.path} on {report['dataset']} ({report['episodes']} episodes,"
        f" {report['frames']} frames, first {report['steps_scored']} steps of each chunk"
        + (f"; {', '.join(cfg.swap_keys)} from another episode" if cfg.swap_keys else "")
        + "):"
        f" mean |a - a_expert| {report['action_mae']:.3f}, loss {report['loss']:.4f}"
        + (f"; holding the current positions: {report['hold_mae']:.3f}" if report["hold_mae"] is not None else "")
    )
    print("  " + "  ".join(f"{joint} {value:.2f}" for joint, value in report["action_mae_per_joint"].items()))
    save(cfg.output, report)  # before a comparison that could refuse it
    if cfg.compare_to is not None:
        report["difference"] = difference(report, Path(cfg.compare_to))
        print(f"  against {cfg.compare_to}: {report['difference']['text']} degrees (this minus that, 95% paired)")
        save(cfg.output, report)
    return report


def main() -> None:
    prepare_command_line(plugins=True)
    action_error_cli()


if __name__ == "__main__":
    main()
