"""segdepth-rl-train's evaluation: episodes with the actor's mean action on fixed cube poses, and the learning curve."""

from pathlib import Path

import numpy as np
import torch

from so101_run_infra.atomic import write_with

from .config import RLTrainConfig
from .drqv2 import DrQV2Agent
from .replay import ReplayBuffer


def evaluate(agent: DrQV2Agent, venv, cfg: RLTrainConfig, video_dir: Path | None) -> dict[str, float]:
    """`eval.episodes` episodes with the actor's mean action on fixed cube poses; videos of the first ones."""
    n, pc = venv.num_envs, agent.policy.config
    returns, successes, videos = [], [], []
    agent.train(False)
    for start in range(0, cfg.eval.episodes, n):
        history = ReplayBuffer.for_policy(pc, capacity=4 * n, num_envs=n, nstep=1)
        obs, _ = venv.reset(seed=[cfg.eval.seed + start + i for i in range(n)])
        history.add_observation(obs["frames"], obs["state"], np.ones(n, bool))
        done, ret, success = np.zeros(n, bool), np.zeros(n), np.zeros(n, bool)
        recording = [start + i < cfg.eval.videos for i in range(n)]
        frames = [[venv.call("render")[i]] if recording[i] else [] for i in range(n)] if any(recording) else None
        while not done.all():
            stack, state = history.latest()
            action = agent.act(torch.from_numpy(stack).float(), torch.from_numpy(state), 0, explore=False).numpy()
            obs, reward, terminated, truncated, info = venv.step(action)
            ret += np.where(done, 0.0, reward)
            success |= ~done & np.asarray(info["is_success"], bool)
            if frames is not None:
                rendered = venv.call("render")
                for i in np.flatnonzero(~done & np.array(recording)):
                    frames[i].append(rendered[i])
            done |= terminated | truncated
            history.add_observation(obs["frames"], obs["state"], np.zeros(n, bool))
        keep = min(n, cfg.eval.episodes - start)
        returns += ret[:keep].tolist()
        successes += success[:keep].tolist()
        if frames is not None:
            videos += [f for f in frames[:keep] if f]
    agent.train(True)
    if video_dir is not None and videos:
        from lerobot.utils.io_utils import write_video

        video_dir.mkdir(parents=True, exist_ok=True)
        fps = max(cfg.env.fps // pc.action_repeat, 1)
        for i, episode in enumerate(videos):
            write_video(str(video_dir / f"eval_episode_{i}.mp4"), np.stack(episode), fps)
    return {"success_rate": float(np.mean(successes)), "return": float(np.mean(returns)), "episodes": len(returns)}


def learning_curve_title(cfg: RLTrainConfig) -> str:
    """What a learning curve shows: the task, the seed, where the policy started, the run and its evaluation poses."""
    start = f"fine-tuning {cfg.policy_path}" if cfg.policy_path else "from scratch"
    last = cfg.eval.seed + cfg.eval.episodes - 1
    return (
        f"segdepth-rl-train {cfg.env.task}, seed {cfg.seed}, {start} ({cfg.output_dir})\n"
        f"each evaluation: {cfg.eval.episodes} episodes on cube poses {cfg.eval.seed}-{last}"
    )


def learning_curve_figure(history: list[dict], title: str):
    """Evaluation success against env frames and mean return against wall time, under `title`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    frames = [h["frames"] for h in history]
    ax1.plot(frames, [100 * h["success_rate"] for h in history], marker="o")
    ax1.set(title="success", xlabel="env frames", ylabel="eval success (% of episodes)", ylim=(-5, 105))
    ax2.plot([h["wall_min"] for h in history], [h["return"] for h in history], marker="o")
    ax2.set(title="return", xlabel="wall time (min)", ylabel="eval return (mean per episode)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig


def plot_learning_curve(history: list[dict], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig = learning_curve_figure(history, title)
    write_with(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
