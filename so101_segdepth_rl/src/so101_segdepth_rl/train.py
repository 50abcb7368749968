"""segdepth-rl-train: DrQ-v2 in the SO-101 twin; every checkpoint is an ordinary `segdepth` policy folder.

    segdepth-rl-train --config_path=configs/rl_reach.yaml [--seed=2 --output_dir=...]
    segdepth-rl-train --config_path=... --resume=true           # continues from output_dir/checkpoints/last
    segdepth-rl-train --config_path=... --frames=200000 --resume=true   # trains a finished run further
    lerobot-eval --policy.path=<output_dir>/checkpoints/last/pretrained_model --env.type=so101_twin ...

The loop is drqv2's train.py: `seed_frames` of uniform random actions, then one update per
`agent.update_every_steps` decision steps of each env. The envs step in worker processes while the learner
updates (step_async, updates, step_wait), so simulation and learning overlap.

This file reads as one run goes: the set-up (`start_run`), the loop (`train` and the steps it calls), the
checkpoints, the command. The configuration is in `config.py`, the evaluation and learning curve in `evaluation.py`,
the Hub push in `publish.py`.
"""

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import draccus
import numpy as np
import torch
from lerobot.configs import FeatureType, parser
from lerobot.envs.utils import env_to_policy_features
from lerobot.policies.factory import make_pre_post_processors
from lerobot.utils.constants import ACTION, OBS_STATE
from tqdm import tqdm

from lerobot_env_so101_twin import SO101TwinEnvConfig
from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy
from lerobot_policy_segdepth.processor_segdepth import make_segdepth_pre_post_processors
from so101_run_infra.atomic import write_json
from so101_run_infra.checkpoints import checkpoint_staging, publish_checkpoint, save_policy
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.resume_state import load_state, refuse_pickled, save_state
from so101_run_infra.rng import capture_rng, restore_rng
from so101_run_infra.runs import (
    claim_training_dir,
    finished_run,
    mark_finished,
)

from .config import RLTrainConfig, comparable, in_todays_names, run_settings, without_push
from .demos import demo_buffer, mixed_batch
from .drqv2 import DrQV2Agent
from .envs import make_vector_env, step_async, step_wait
from .evaluation import evaluate, learning_curve_title, plot_learning_curve
from .publish import push_policy
from .replay import ReplayBuffer

logger = logging.getLogger("segdepth-rl")
PRETRAINED = "pretrained_model"


@dataclass
class Workspace:
    """What the loop reads and writes (drqv2's Workspace): the learner, its buffers, the envs and the counters."""

    cfg: RLTrainConfig
    agent: DrQV2Agent
    pre: object
    post: object
    replay: ReplayBuffer
    demos: ReplayBuffer | None
    encode: object
    counters: dict
    history: list[dict]
    venv: object = None
    eval_venv: object = None
    wandb_run: object = None
    progress: object = None
    started: float = 0.0
    rng: np.random.Generator | None = None  # the seed frames' uniform actions
    opening: ReplayBuffer | None = None  # the reset observations, until the first updates have drawn their batch
    pending: dict | None = None
    was_done: np.ndarray | None = None
    episode_return: np.ndarray | None = None
    episode_success: np.ndarray | None = None
    recent: list[tuple[float, bool]] = field(default_factory=list)
    losses: list[dict] = field(default_factory=list)
    window: dict = field(default_factory=dict)
    next_log: int = 0
    next_eval: int = 0

    def out_of_time(self) -> bool:
        return self.cfg.max_minutes is not None and time.perf_counter() - self.started > 60 * self.cfg.max_minutes

    def finished(self) -> bool:
        return self.counters["frames"] >= self.cfg.frames or self.out_of_time()


# ----- a run's set-up, in the order start_run does it -----------------------------------------------------------------
def start_run(cfg: RLTrainConfig) -> Workspace:
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    last = claim_output_dir(cfg)
    torch.manual_seed(cfg.seed)
    ws = build_learner(cfg, last)
    if not cfg.resume:
        write_json(cfg.output_dir / "train_config.json", comparable(cfg))
        with open(cfg.output_dir / "config.yaml", "w") as f:
            draccus.dump(cfg, f)
    if cfg.agent.critic_pretrain_updates and not cfg.resume:
        pretrain_critic(ws.agent, ws.demos, cfg, ws.encode)
    start_envs(ws)
    logger.info(
        "replay: %d bytes per transition (%.2f GB per 100k; %.2f GB with stacked observations)",
        ws.replay.nbytes_per_transition,
        ws.replay.nbytes_per_transition * 1e5 / 1e9,
        ws.replay.stacked_nbytes_per_transition() * 1e5 / 1e9,
    )
    ws.wandb_run = start_wandb(cfg)
    return ws


def claim_output_dir(cfg: RLTrainConfig) -> Path:
    """The last checkpoint, after checking that the output folder may be used (see so101_run_infra.runs): a resumed
    run must share `comparable(cfg)` with the one it continues; a new one refuses any folder in use, naming what
    it holds."""
    last = cfg.output_dir / "checkpoints" / "last"
    if cfg.resume:
        refuse_pickled(last, "training_state.pt")  # what 0.2.0 and before wrote
    record = cfg.output_dir / "train_config.json"
    saved = without_push(in_todays_names(json.loads(record.read_text()))) if record.is_file() else None
    now = comparable(cfg)
    claim_training_dir(cfg.output_dir, cfg.resume, last, "segdepth-rl-train", shape_saved=saved, shape_now=now,
                       saved=saved, now=now, settings=run_settings(cfg))  # fmt: skip
    return last


def build_learner(cfg: RLTrainConfig, last: Path) -> Workspace:
    """The policy (from scratch, a checkpoint, or the run resumed), its agent, the replay and the demonstrations,
    with the state of a resumed run loaded into them."""
    policy, pre, post = starting_policy(cfg, last)
    pc = policy.config
    check_policy_fits_env(policy, cfg.env.env_config(pc.camera))
    policy.to(cfg.device)
    agent = DrQV2Agent(policy, cfg.agent, init_policy_weights=cfg.policy_path is None and not cfg.resume)
    replay = make_replay(cfg, pc)
    demos = None
    if cfg.demos.repo_id:
        nstep, discount = cfg.agent.nstep, cfg.agent.discount
        demos, demo_summary = demo_buffer(cfg.demos, pc, pre, cfg.env.task, nstep, discount, cfg.seed + 1)
        tqdm.write(f"[demos] {demo_summary}")
    encode = None
    if cfg.agent.feature_cache:
        encode = agent.encode
        for buffer in (replay, demos):
            if buffer is not None:
                buffer.enable_feature_cache(policy.encoder.repr_dim)
    counters = {"frames": 0, "decisions": 0, "updates": 0, "episodes": 0, "wall_s": 0.0, "update_debt": 0.0}
    ws = Workspace(cfg, agent, pre, post, replay, demos, encode, counters, history=[])
    if cfg.resume:
        state = load_state(last / "training_state")  # on the CPU: load_state_dict copies onto the agent's device
        agent.load_state_dict(state["agent"])
        ws.counters = state["counters"]
        restore_rng_state(state, demos)
        replay.load(last / "replay")
        replay.truncate_open_episodes()  # the episodes in flight at the save are lost with the old workers
        ws.history = [json.loads(line) for line in (cfg.output_dir / "eval.jsonl").read_text().splitlines() if line]
        logger.info("resumed from %s at %d frames", last.resolve().name, ws.counters["frames"])
    return ws


def starting_policy(cfg: RLTrainConfig, last: Path) -> tuple[SegDepthPolicy, object, object]:
    if cfg.resume:
        return policy_from_checkpoint(last / PRETRAINED)
    if cfg.policy_path is not None:
        return policy_from_checkpoint(cfg.policy_path)
    return policy_from_scratch(cfg)


def policy_from_scratch(cfg: RLTrainConfig) -> tuple[SegDepthPolicy, object, object]:
    policy_cfg = dataclasses.replace(cfg.policy, device="cpu")
    features = env_to_policy_features(cfg.env.env_config(policy_cfg.camera))
    policy_cfg.output_features = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
    policy_cfg.input_features = {k: f for k, f in features.items() if k not in policy_cfg.output_features}
    policy = SegDepthPolicy(policy_cfg)
    # no dataset: the state is normalised over the joint ranges (the twin's, unless --policy.joint_limits* says)
    limits = policy_cfg.resolved_joint_limits()
    pre, post = make_segdepth_pre_post_processors(policy_cfg, state_stats_from_limits(limits))
    return policy, pre, post


def state_stats_from_limits(limits: list[list[float]]) -> dict[str, dict[str, torch.Tensor]]:
    """Normalisation stats for a policy with no dataset: a uniform spread over the joint ranges."""
    limits = torch.tensor(limits, dtype=torch.float32)
    low, high = limits[:, 0], limits[:, 1]
    return {OBS_STATE: {"mean": (low + high) / 2, "std": (high - low) / math.sqrt(12), "min": low, "max": high}}


def policy_from_checkpoint(path: Path) -> tuple[SegDepthPolicy, object, object]:
    policy = SegDepthPolicy.from_pretrained(str(path))
    policy.config.device = "cpu"
    pre, post = make_pre_post_processors(
        policy.config, pretrained_path=str(path), preprocessor_overrides={"device_processor": {"device": "cpu"}}
    )
    return policy, pre, post


def check_policy_fits_env(policy: SegDepthPolicy, env_cfg: SO101TwinEnvConfig) -> None:
    """Fail before any worker starts when the env cannot feed the policy or take its actions."""
    features = env_to_policy_features(env_cfg)
    provided = {key for key, f in features.items() if f.type is not FeatureType.ACTION}
    pc = policy.config
    if pc.action_mode == "chained" or pc.action_history:
        # the workers hold a delta for action_repeat env steps around each step's present state, and reset their
        # envs one by one, where a chained policy adds to the target its processors sent last and a history reads them
        raise ValueError(
            "segdepth-rl-train fine-tunes policies with --policy.action_mode=delta or absolute and no "
            f"--policy.action_history; this one is {pc.action_mode} with action_history={pc.action_history}"
        )
    needed = [pc.depth_key, pc.segmentation_key] + ([OBS_STATE] if pc.use_state else [])
    missing = [key for key in needed if key not in provided]
    if missing:
        raise ValueError(
            f"the policy reads {missing}, which the env ({env_cfg.task}, cameras={env_cfg.cameras}) does not provide; "
            f"it provides {sorted(provided)}. Set --env.cameras to include '{pc.camera}' (with depth and segmentation)"
        )
    # the preprocessor centre-crops the render's square and resizes it to image_size: a smaller square would be
    # blown up, the policy seeing fewer pixels than it was built for
    height, width = env_cfg.observation_height, env_cfg.observation_width
    if min(height, width) < pc.image_size:
        raise ValueError(
            f"--env.observation_height={height} --env.observation_width={width} render a {min(height, width)}-pixel "
            f"square, smaller than the policy's --policy.image_size={pc.image_size}: render at least that (e.g. "
            f"--env.observation_height={pc.image_size} --env.observation_width={round(pc.image_size * 4 / 3)}) "
            "or give the policy a smaller image_size"
        )
    env_action = tuple(features[ACTION].shape)
    policy_action = tuple(pc.output_features[ACTION].shape) if ACTION in (pc.output_features or {}) else (6,)
    if env_action != policy_action:
        raise ValueError(f"the env takes actions of shape {env_action}, the policy emits {policy_action}")
    if not pc.perception_record.ground_truth:
        raise ValueError(
            "segdepth-rl-train learns from the twin's ground truth: the policy needs perception_source=ground_truth"
        )


def make_replay(cfg: RLTrainConfig, pc: SegDepthConfig) -> ReplayBuffer:
    return ReplayBuffer.for_policy(
        pc,
        capacity=cfg.replay_capacity,
        num_envs=cfg.num_envs,
        nstep=cfg.agent.nstep,
        discount=cfg.agent.discount,
        seed=cfg.seed,
    )


def pretrain_critic(agent: DrQV2Agent, demos: ReplayBuffer | None, cfg: RLTrainConfig, encode) -> None:
    """agent.critic_pretrain_updates critic-only updates on batches of demonstrations, logged to
    critic_pretrain.jsonl; the online update counter is untouched (actor_warmup_updates counts from the first
    env step)."""
    if demos is None:
        raise ValueError("agent.critic_pretrain_updates > 0 needs demonstrations (demos.repo_id)")
    n = cfg.agent.critic_pretrain_updates
    log_every = max(n // 20, 1)
    losses: list[dict] = []
    with open(cfg.output_dir / "critic_pretrain.jsonl", "a") as f:
        for i in tqdm(range(n), desc="critic on demos", unit="update", dynamic_ncols=True):
            losses.append(agent.update(demos.sample(cfg.agent.batch_size, encode), 0, actor=False))
            if (i + 1) % log_every == 0 or i + 1 == n:
                metrics = {"update": i + 1, **{k: float(np.mean([m[k] for m in losses])) for k in losses[0]}}
                f.write(json.dumps(metrics) + "\n")
                f.flush()
                tqdm.write(f"[critic pretrain] {i + 1}/{n}: loss {metrics['critic_loss']:.3g}, q {metrics['q']:.3g}")
                losses = []


def start_envs(ws: Workspace) -> None:
    """The training and evaluation envs (in workers that load the processors this run saves), their first
    observations, and the loop's cadences."""
    cfg, pc, counters = ws.cfg, ws.agent.policy.config, ws.counters
    # the workers load the policy's processors from a folder: the ones this run saves in its checkpoints
    init_dir = cfg.output_dir / "processors"
    shutil.rmtree(init_dir, ignore_errors=True)
    save_policy(init_dir, ws.agent.policy, ws.pre, ws.post)
    env_cfg = cfg.env.env_config(pc.camera)
    term, bonus = cfg.env.terminate_on_success, cfg.env.success_bonus
    # training envs render only the policy's camera; the evaluation envs add the video cameras
    train_env_cfg = dataclasses.replace(env_cfg, render_cameras=None)
    ws.venv = make_vector_env(train_env_cfg, init_dir, pc.action_repeat, cfg.num_envs, cfg.workers, term, bonus)
    ws.eval_venv = make_vector_env(env_cfg, init_dir, pc.action_repeat, cfg.eval.num_envs, cfg.workers, term, 0.0)
    n = cfg.num_envs
    ws.rng = np.random.default_rng(cfg.seed + 7919 * counters["episodes"])
    obs, _ = ws.venv.reset(seed=[10_000 * (cfg.seed + 1) + counters["episodes"] + i for i in range(n)])
    # The reset observations enter the replay after the first iteration's updates, so a resumed run draws its
    # first batch from exactly the replay it saved. Their stacks need no history: every episode starts here.
    ws.opening = ReplayBuffer.for_policy(pc, capacity=n, num_envs=n)
    ws.opening.add_observation(obs["frames"], obs["state"], np.ones(n, bool))
    ws.pending = obs
    ws.was_done = np.zeros(n, bool)
    ws.episode_return, ws.episode_success = np.zeros(n), np.zeros(n, bool)
    # logs and evaluations fall on multiples of their cadence, whether the run was resumed or not
    ws.next_log = next_multiple(counters["frames"], cfg.log_freq)
    ws.next_eval = next_multiple(counters["frames"], cfg.eval.every_frames or cfg.frames)


def next_multiple(value: int, every: int) -> int:
    """The smallest multiple of `every` above `value`."""
    return (value // every + 1) * every


def start_wandb(cfg: RLTrainConfig):
    if not cfg.wandb.enable:
        return None
    import wandb

    config = json.loads(json.dumps(draccus.encode(cfg), default=str))
    return wandb.init(project=cfg.wandb.project, dir=str(cfg.output_dir), mode=cfg.wandb.mode, config=config)


# ----- the loop: collect, update, log, evaluate and save, in the order train calls them -------------------------------
def train(cfg: RLTrainConfig, on_update=None) -> dict:
    """Run (or resume) a training; `on_update(counters, batch)` sees every replay batch before it is learned. A run
    already finished in output_dir with these settings is not trained again (`already_trained` in the result)."""
    if (done := finished_run(cfg.output_dir, lambda: run_settings(cfg))) is not None:
        return {**done["result"], "already_trained": True}
    ws = start_run(cfg)
    try:
        if cfg.policy_path is not None and not cfg.resume and cfg.eval.at_start:
            result = record_evaluation(ws, 0)  # the learning curve's point at 0 frames
            tqdm.write(f"[eval] start: success {result['success_rate']:.0%}, return {result['return']:.1f}")
        ws.started = time.perf_counter() - ws.counters["wall_s"]
        frames = ws.counters["frames"]
        ws.window = {"t": time.perf_counter(), "frames": frames, "updates": ws.counters["updates"]}
        ws.progress = tqdm(
            total=cfg.frames, initial=min(frames, cfg.frames), unit="frame", desc="drqv2", dynamic_ncols=True
        )
        finished = ws.finished()
        while not finished:
            action = choose_action(ws)
            step_async(ws.venv, action)  # the envs step in their workers while the learner updates
            update(ws, on_update)
            collect(ws, action)
            finished = ws.finished()  # once, so that a run that stops is always logged, evaluated and saved
            if ws.counters["frames"] >= ws.next_log or finished:
                log_training(ws)
            if ws.counters["frames"] >= ws.next_eval or finished:
                evaluate_and_save(ws)
    finally:
        close(ws)
    checkpoint = str(cfg.output_dir / "checkpoints" / "last" / PRETRAINED)
    frames = ws.counters["frames"]
    summary = f"{frames} frames" + (f", stopped at max_minutes={cfg.max_minutes}" if frames < cfg.frames else "")
    final = ws.history[-1] if ws.history else {}
    mark_finished(cfg.output_dir, run_settings(cfg), summary, counters=ws.counters, checkpoint=checkpoint,
                  final_eval=final)  # fmt: skip
    return {"history": ws.history, "counters": ws.counters, "checkpoint": checkpoint}


def choose_action(ws: Workspace) -> np.ndarray:
    """Uniform random actions for the seed frames, then the actor's exploring ones."""
    if ws.counters["frames"] < ws.cfg.seed_frames:
        return ws.rng.uniform(-1.0, 1.0, (ws.cfg.num_envs, 6)).astype(np.float32)
    stack, state = ws.opening.latest() if ws.pending is not None else ws.replay.latest()
    step = ws.counters["decisions"]
    return ws.agent.act(torch.from_numpy(stack).float(), torch.from_numpy(state), step, explore=True).numpy()


def update(ws: Workspace, on_update=None) -> None:
    """One update per `agent.update_every_steps` decision steps (fractions carried over), once past the seed frames."""
    cfg, counters = ws.cfg, ws.counters
    if counters["frames"] < cfg.seed_frames or not ws.replay.can_sample():
        return
    counters["update_debt"] += cfg.num_envs / cfg.agent.update_every_steps
    while counters["update_debt"] >= 1:
        batch = mixed_batch(ws.replay, ws.demos, cfg.agent.batch_size, cfg.demos.share, ws.encode)
        if on_update is not None:
            on_update(dict(counters), batch)
        ws.losses.append(ws.agent.update(batch, counters["decisions"], counters["updates"]))
        counters["updates"] += 1
        counters["update_debt"] -= 1


def collect(ws: Workspace, action: np.ndarray) -> None:
    """Wait for the envs' step with `action` and store it (the opening observations first, after the updates)."""
    replay, counters, n = ws.replay, ws.counters, ws.cfg.num_envs
    if ws.pending is not None:
        replay.add_observation(ws.pending["frames"], ws.pending["state"], np.ones(n, bool))
        ws.pending = None
    obs, reward, terminated, truncated, info = step_wait(ws.venv)
    acted = ~ws.was_done
    replay.add_outcome(action, reward, terminated, truncated, acted)
    replay.add_observation(obs["frames"], obs["state"], ws.was_done)
    ws.episode_return += np.where(acted, reward, 0.0)
    ws.episode_success |= acted & np.asarray(info["is_success"], bool)
    done = acted & (terminated | truncated)
    for i in np.flatnonzero(done):
        ws.recent.append((float(ws.episode_return[i]), bool(ws.episode_success[i])))
        counters["episodes"] += 1
        ws.episode_return[i], ws.episode_success[i] = 0.0, False
    ws.was_done = done
    new_frames = int(acted.sum()) * ws.agent.policy.config.action_repeat
    counters["frames"] += new_frames
    counters["decisions"] += int(acted.sum())
    ws.progress.update(new_frames)


def log_training(ws: Workspace) -> None:
    """One train.jsonl line: speed, the episodes finished and the mean losses since the last line."""
    counters, window, now = ws.counters, ws.window, time.perf_counter()
    metrics = {
        "frames": counters["frames"],
        "fps": (counters["frames"] - window["frames"]) / (now - window["t"]),
        "updates_per_s": (counters["updates"] - window["updates"]) / (now - window["t"]),
        "episodes": counters["episodes"],
    }
    if ws.recent:
        metrics["train_return"] = float(np.mean([r for r, _ in ws.recent]))
        metrics["train_success"] = float(np.mean([s for _, s in ws.recent]))
    for key in ws.losses[0] if ws.losses else ():
        metrics[key] = float(np.mean([m[key] for m in ws.losses]))
    shown = ("train_return", "train_success", "critic_loss", "q", "updates_per_s")
    ws.progress.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if k in shown})
    with open(ws.cfg.output_dir / "train.jsonl", "a") as f:
        f.write(json.dumps(metrics) + "\n")
    if ws.wandb_run is not None:
        ws.wandb_run.log({f"train/{k}": v for k, v in metrics.items()}, step=counters["frames"])
    ws.recent, ws.losses = [], []
    ws.window = {"t": now, "frames": counters["frames"], "updates": counters["updates"]}
    ws.next_log = next_multiple(counters["frames"], ws.cfg.log_freq)


def evaluate_and_save(ws: Workspace) -> None:
    """Evaluate, plot the learning curve and save a checkpoint (`best` too when its evaluation is the best)."""
    cfg, counters = ws.cfg, ws.counters
    ws.next_eval += cfg.eval.every_frames or cfg.frames
    counters["wall_s"] = time.perf_counter() - ws.started
    result = record_evaluation(ws, counters["frames"])
    plot_learning_curve(ws.history, cfg.output_dir / "learning_curve.png", learning_curve_title(cfg))
    if ws.wandb_run is not None:
        ws.wandb_run.log({f"eval/{k}": v for k, v in result.items()}, step=counters["frames"])
    tqdm.write(
        f"[eval] {counters['frames']} frames, {counters['wall_s'] / 60:.1f} min: success "
        f"{result['success_rate']:.0%} over {result['episodes']} episodes, return {result['return']:.1f}"
    )
    # `best`: the highest success among this run's checkpoints (ties: the higher return), judged on the
    # evaluation poses (eval.seed), which should differ from the poses a final comparison uses
    saved = [h for h in ws.history if h["frames"] > 0]
    best = max(saved, key=lambda h: (h["success_rate"], h["return"])) is result
    final = save_checkpoint(cfg, ws.agent, ws.pre, ws.post, ws.replay, dict(counters), ws.demos, best=best)
    tqdm.write(f"[checkpoint] {final}")


def record_evaluation(ws: Workspace, frames: int) -> dict:
    """Evaluate the actor, append the result to eval.jsonl and the history, and return it."""
    cfg, counters = ws.cfg, ws.counters
    result = evaluate(ws.agent, ws.eval_venv, cfg, cfg.output_dir / "videos" / f"{frames:010d}")
    result.update(frames=frames, updates=counters["updates"] if frames else 0, wall_min=counters["wall_s"] / 60)
    ws.history.append(result)
    with open(cfg.output_dir / "eval.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    return result


def close(ws: Workspace) -> None:
    for part in (ws.progress, ws.venv, ws.eval_venv):
        if part is not None:
            part.close()
    if ws.wandb_run is not None:
        ws.wandb_run.finish()


# ----- checkpoints ----------------------------------------------------------------------------------------------------
def save_checkpoint(
    cfg: RLTrainConfig,
    agent: DrQV2Agent,
    pre,
    post,
    replay: ReplayBuffer,
    counters: dict,
    demos=None,
    best: bool = False,
) -> Path:
    """checkpoints/<frames>/{pretrained_model, training_state/, replay/}, written into a staging folder and
    swapped in, then `last` (and `best`, when this checkpoint's evaluation is the best so far) pointed at it; an
    interrupted save leaves the previous checkpoint and both links as they were. Keeps this checkpoint, the one
    before, and the best."""
    final = cfg.output_dir / "checkpoints" / f"{counters['frames']:010d}"
    staging = checkpoint_staging(final)
    save_policy(staging / PRETRAINED, agent.policy, pre, post)
    # the demonstrations are rebuilt from the recording; only their sampler's state is kept
    state = {"agent": agent.state_dict(), "counters": counters, "rng": capture_rng(rng_generators(demos))}
    save_state(staging / "training_state", state)  # safetensors + JSON (so101_run_infra.resume_state)
    replay.save(staging / "replay")
    return publish_checkpoint(staging, final, keep=2, links=("last", "best") if best else ("last",))


def rng_generators(demos: ReplayBuffer | None) -> dict:
    return {"demos": demos.rng} if demos is not None else {}


def restore_rng_state(state: dict, demos: ReplayBuffer | None) -> None:
    """The generators of a checkpoint, in its format: `rng` (capture_rng), or the torch and demo states that
    checkpoints written before it held."""
    if "rng" in state:
        restore_rng(state["rng"], rng_generators(demos))
        return
    torch.set_rng_state(state["torch_rng"].cpu())
    if demos is not None and "demo_rng" in state:
        demos.rng.bit_generator.state = state["demo_rng"]


# ----- the command ----------------------------------------------------------------------------------------------------
@parser.wrap()
def run(cfg: RLTrainConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = train(cfg)
    if result.get("already_trained"):  # said so in one line: nothing is trained, evaluated or pushed again
        return
    last = result["history"][-1] if result["history"] else {}
    print(json.dumps({"final_eval": last, "checkpoint": result["checkpoint"]}, indent=2))
    if cfg.policy.push_to_hub:
        print(f"pushed {result['checkpoint']} to {push_policy(cfg, result)}")


def main() -> None:
    prepare_command_line(plugins=True)
    run()


if __name__ == "__main__":
    main()
