"""HLRP's pretraining comparison in the twin: does a trunk pretrained on latent actions of action-free
video learn LiftCube from a few labelled demonstrations better than the same policy from scratch? Stage by stage,
resuming where it stopped:

1. record the corpus (configs/hlrp_corpus_*.yaml: both tasks, three DART levels, plain and shifted appearance,
   ground-truth segmentation) and the labelled set (configs/hlrp_twin_finetune_data.yaml: 20 LiftCube episodes on
   poses no corpus episode and no evaluation uses)
2. make the twin-size random SmolVLM2-shaped trunk (`so101-make-random-vlm --size=twin`)
3. stage 1, `hlrp-train-laq`: the plain LAQ (configs/hlrp_laq_corpus.yaml) and, for arm latent_only_seg, the
   segmentation-weighted one (configs/hlrp_laq_corpus_seg.yaml)
4. stage 2, `hlrp-train-trunk`: latent actions only (configs/hlrp_trunk_corpus_latent.yaml, the corpus as video),
   from the plain LAQ and from the weighted one; and with the corpus's actions (configs/hlrp_trunk_corpus_actions.yaml)
5. stage 3, `lerobot-train` of every arm and seed on the labelled set (configs/hlrp_finetune_corpus.yaml from an
   artifact, configs/hlrp_scratch_corpus.yaml without), then `lerobot-eval` on the same unseen poses (`--seed=1000`)
6. the tables: stage-1 code usage and held-out reconstruction, stage-2 final losses, stage-3 success per seed with
   each arm's pooled Wilson 95% interval and Newcombe's 95% interval of latent_only - scratch and
   latent_only_seg - latent_only, mean return, and the wall time of every stage

Arms: latent_only (a: stage 3 from the latent-only artifact), scratch (b: no stage 2), with_actions (c: from the
artifact trained with the corpus's actions, the upper reference), latent_only_seg (d: as a, segmentation-weighted LAQ).

    .venv/bin/python examples/hlrp_twin.py                                  # four arms x three seeds
    .venv/bin/python examples/hlrp_twin.py --arms='[latent_only,scratch]' --seeds='[1]'
    .venv/bin/python examples/hlrp_twin.py --output_dir=/tmp/smoke --episodes=2 --laq_steps=2 --trunk_steps=2 \\
        --policy_steps=2 --batch_size=4 --eval_episodes=1 --eval_episode_length=30 --seeds='[1]'   # a smoke run

A finished stage is skipped when run again (its output is there); an interrupted trainer resumes from its last
checkpoint. Every command's output goes to `<output_dir>/logs/`; `<output_dir>/results.json` holds the tables' figures.
"""

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs import parser

from so101_devtools.stages import run_logged
from so101_run_infra.atomic import write_json
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.stats import newcombe, wilson

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# arm -> (stage-1 LAQ, stage-2 run) it starts from; scratch has neither
ARMS = {
    "latent_only": ("laq_plain", "trunk_latent_only"),
    "scratch": (None, None),
    "with_actions": ("laq_plain", "trunk_with_actions"),
    "latent_only_seg": ("laq_seg", "trunk_latent_only_seg"),
}
# stage-2 run -> (the LAQ it learns from, whether it reads the corpus's actions)
TRUNKS = {
    "trunk_latent_only": ("laq_plain", False),
    "trunk_with_actions": ("laq_plain", True),
    "trunk_latent_only_seg": ("laq_seg", False),
}
DIFFERENCES = [("latent_only", "scratch"), ("latent_only_seg", "latent_only"), ("with_actions", "scratch")]
STEP_LINE = r" INFO step (\d+) "  # hlrp-train-laq's and hlrp-train-trunk's log line every log_freq steps


@dataclass
class HLRPTwinConfig:
    # every stage's output, the logs and results.json; a finished stage found here is skipped
    output_dir: Path = Path("outputs/hlrp_twin")
    # so101-twin-record's configs of the pretraining corpus (recorded into <output_dir>/data/<name>)
    corpus_configs: list[Path] = field(
        default_factory=lambda: [
            Path(f"configs/hlrp_corpus_{n}.yaml")
            for n in ("lift_plain", "lift_clean", "lift_shifted", "reach_plain", "reach_shifted")
        ]
    )
    # so101-twin-record's config of the labelled LiftCube set stage 3 trains on
    labelled_config: Path = Path("configs/hlrp_twin_finetune_data.yaml")
    # hlrp-train-laq's config with the plain reconstruction loss
    laq_config: Path = Path("configs/hlrp_laq_corpus.yaml")
    # hlrp-train-laq's config with the segmentation-weighted reconstruction loss (arm latent_only_seg)
    laq_seg_config: Path = Path("configs/hlrp_laq_corpus_seg.yaml")
    # hlrp-train-trunk's config with latent actions only (the corpus as video)
    trunk_latent_config: Path = Path("configs/hlrp_trunk_corpus_latent.yaml")
    # hlrp-train-trunk's config that also reads the corpus's actions (arm with_actions)
    trunk_actions_config: Path = Path("configs/hlrp_trunk_corpus_actions.yaml")
    # lerobot-train's config from a stage-2 artifact
    finetune_config: Path = Path("configs/hlrp_finetune_corpus.yaml")
    # lerobot-train's config without stage 2 (arm scratch)
    scratch_config: Path = Path("configs/hlrp_scratch_corpus.yaml")
    # the arms to run (latent_only, scratch, with_actions, latent_only_seg)
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    # stage-3 training seeds, one lerobot-train run per arm and seed (stages 1 and 2 run once, seeded by their configs)
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    # lerobot-eval episodes per checkpoint
    eval_episodes: int = 20
    # lerobot-eval's --seed: cube poses none of the recordings' seeds gave
    eval_seed: int = 1000
    # lerobot-eval's --eval.batch_size (environments stepped together)
    eval_batch_size: int = 10
    # smoke-size overrides, None: the configs' own. Episodes of every recording
    episodes: int | None = None
    # seconds of every recorded episode (None: the configs' own)
    episode_time_s: float | None = None
    # so101-twin-record's --num_workers (None: the configs' own); 1 records in the command's own process, which spares
    # a spawned worker's start-up (as long as a smoke-size recording itself)
    record_workers: int | None = None
    # steps of stage 1 (None: the config's)
    laq_steps: int | None = None
    # steps of stage 2 (None: the config's)
    trunk_steps: int | None = None
    # steps of stage 3 (None: the config's)
    policy_steps: int | None = None
    # batch size of every training stage
    batch_size: int | None = None
    # lerobot-eval's --env.episode_length (None: the task's own, 300 steps for LiftCube)
    eval_episode_length: int | None = None
    # torch threads (OMP_NUM_THREADS) for lerobot-train and lerobot-eval
    torch_threads: int = 2
    # OMP_WAIT_POLICY for them: PASSIVE lets idle threads sleep
    omp_wait_policy: str = "PASSIVE"
    # a folder keeping each finished stage's result files and wall time (a few kB, small enough to commit): a
    # stage-3 run found there is not trained again, so the experiment outlives its checkpoints and spans machines
    archive_dir: Path | None = None

    def __post_init__(self):
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown:
            raise ValueError(f"--arms has unknown arm(s) {unknown}; the arms are {list(ARMS)}")
        if not self.seeds or self.eval_episodes < 1:
            raise ValueError("--seeds must not be empty and --eval_episodes must be >= 1")


# ----- bookkeeping -----------------------------------------------------------------------------------------------
def archived(cfg: HLRPTwinConfig, filename: str) -> Path | None:
    path = cfg.archive_dir / filename if cfg.archive_dir is not None else None
    return path if path is not None and path.is_file() else None


def keep(cfg: HLRPTwinConfig, filename: str, record: dict) -> dict:
    """Write a stage's summary into <output_dir>/summaries and the archive (when one is given)."""
    write_json(cfg.output_dir / "summaries" / filename, record)
    if cfg.archive_dir is not None:
        write_json(cfg.archive_dir / filename, record)
    return record


def summary(cfg: HLRPTwinConfig, filename: str) -> dict | None:
    """A stage's kept summary: from the archive first, then from this output folder."""
    path = archived(cfg, filename) or cfg.output_dir / "summaries" / filename
    return json.loads(path.read_text()) if path.is_file() else None


def add_wall(folder: Path, seconds: float) -> float:
    """Sum a stage's wall seconds over its resumed parts (folder/wall_s.json); the total."""
    path = folder / "wall_s.json"
    total = (json.loads(path.read_text())["seconds"] if path.is_file() else 0.0) + seconds
    write_json(path, {"seconds": total})
    return total


def fresh_or_resume(run: Path, last: Path) -> list[str]:
    """[--resume=true] when the run saved a checkpoint; otherwise a clean folder (a run that never saved has
    nothing worth keeping, and the trainers refuse a non-empty folder)."""
    if last.exists():
        return ["--resume=true"]
    if run.exists():
        shutil.rmtree(run)
    return []


def load_config(cls, path: Path):
    import draccus

    with open(path) as f:
        return draccus.load(cls, f)


# ----- stages 0-2 ------------------------------------------------------------------------------------------------
def data_root(cfg: HLRPTwinConfig, config: Path) -> Path:
    name = "labelled" if config == cfg.labelled_config else config.stem.removeprefix("hlrp_")
    return cfg.output_dir / "data" / name


def record_stage(cfg: HLRPTwinConfig) -> dict[str, Path]:
    """Every recording (skipped when its dataset is there); repo_id -> the folder it is in."""
    from lerobot_env_so101_twin.commands.record import TwinRecordConfig

    roots = {}
    for config in [*cfg.corpus_configs, cfg.labelled_config]:
        record = load_config(TwinRecordConfig, config)
        root = data_root(cfg, config)
        roots[record.dataset.repo_id] = root
        if (root / "meta" / "info.json").is_file():
            continue
        args = [str(VENV_BIN / "so101-twin-record"), f"--config_path={config}", f"--dataset.root={root}"]
        if cfg.episodes is not None:
            args.append(f"--dataset.num_episodes={cfg.episodes}")
        if cfg.episode_time_s is not None:
            args.append(f"--dataset.episode_time_s={cfg.episode_time_s}")
        if cfg.record_workers is not None:
            args.append(f"--num_workers={cfg.record_workers}")
        seconds = run_logged(args, cfg.output_dir / "logs" / f"record_{root.name}.log", f"record {root.name}")
        keep(
            cfg,
            f"record_{root.name}.json",
            {"seconds": seconds, "episodes": cfg.episodes or record.dataset.num_episodes},
        )
    return roots


def recordings_fingerprint(cfg: HLRPTwinConfig) -> dict[str, dict]:
    """Every recording's content fingerprint, by its folder's name: what stages 1-3 of this machine train on."""
    from lerobot_env_so101_twin.fingerprint import recording_fingerprint

    configs = [*cfg.corpus_configs, cfg.labelled_config]
    return {data_root(cfg, c).name: recording_fingerprint(data_root(cfg, c)) for c in configs}


def check_same_recordings(cfg: HLRPTwinConfig, fingerprints: dict[str, dict], seed: int) -> None:
    """The arms of one seed must be trained on the same recordings (and so on the same stage-1/2 runs): the twin's
    floating point differs between CPU kinds, so another machine records other demonstrations from the same seeds.
    Seeds may differ; arms within a seed may not."""
    for arm in cfg.arms:
        kept = summary(cfg, f"stage3_{arm}_s{seed}.json")
        if kept is not None and kept.get("recordings") not in (None, fingerprints):
            raise RuntimeError(
                f"seed {seed}'s {arm} run (kept in {cfg.archive_dir or cfg.output_dir / 'summaries'}) trained on other "
                f"recordings than this machine's: {kept['recordings']} against {fingerprints}. The arms of a seed must "
                f"share them: move that seed's files out of the archive to train its arms here, or run another seed."
            )


def vlm_dir(cfg: HLRPTwinConfig) -> Path:
    folder = cfg.output_dir / "smolvlm_twin"
    if not (folder / "config.json").is_file():
        args = [str(VENV_BIN / "so101-make-random-vlm"), "--size=twin", f"--output_dir={folder}"]
        run_logged(args, cfg.output_dir / "logs" / "vlm.log", "random twin SmolVLM")
    return folder


def corpus_arg(datasets: list, roots: dict[str, Path]) -> str:
    """--datasets=[...] of a stage's config with every root pointing at this run's recordings."""
    import dataclasses

    entries = []
    for d in datasets:
        if d.repo_id not in roots:
            raise ValueError(f"{d.repo_id} is in a stage config but in none of --corpus_configs")
        entries.append({**dataclasses.asdict(d), "root": str(roots[d.repo_id])})
    return f"--datasets={json.dumps(entries)}"


def laq_stage(cfg: HLRPTwinConfig, name: str, roots: dict[str, Path]) -> dict:
    """hlrp-train-laq for laq_plain or laq_seg; its held-out metrics and wall time."""
    from lerobot_policy_hlrp.pretrain.laq_config import LAQTrainConfig

    done = summary(cfg, f"stage1_{name}.json")
    run = cfg.output_dir / name
    if done is not None and (not needs_checkpoints(cfg) or (run / "laq" / "model.safetensors").is_file()):
        return done
    config = cfg.laq_seg_config if name == "laq_seg" else cfg.laq_config
    stage = load_config(LAQTrainConfig, config)
    steps = cfg.laq_steps or stage.steps
    args = [str(VENV_BIN / "hlrp-train-laq"), f"--config_path={config}", corpus_arg(stage.datasets, roots),
            f"--output_dir={run}", f"--steps={steps}", *fresh_or_resume(run, run / "checkpoints" / "last")]  # fmt: skip
    if cfg.batch_size:
        args.append(f"--batch_size={cfg.batch_size}")
    seconds = run_logged(args, cfg.output_dir / "logs" / f"stage1_{name}.log", f"stage 1 {name}", steps, STEP_LINE)
    metrics = json.loads((run / "metrics.json").read_text())
    shown = ("used_codes", "codebook_size", "perplexity", "recon_mse", "copy_baseline_mse", "recon_mse_weighted",
             "recon_mse_by_class", "loss_weighting", "step")  # fmt: skip
    return keep(cfg, f"stage1_{name}.json", {**{k: metrics.get(k) for k in shown}, "seconds": add_wall(run, seconds)})


def trunk_stage(cfg: HLRPTwinConfig, name: str, roots: dict[str, Path], vlm: Path) -> dict:
    """hlrp-train-trunk for one stage-2 run; its final losses, supervision and wall time."""
    from lerobot_policy_hlrp.commands.train_trunk import TrunkTrainConfig

    run = cfg.output_dir / name
    done = summary(cfg, f"stage2_{name}.json")
    if done is not None and (not needs_checkpoints(cfg) or (run / "artifact" / "manifest.json").is_file()):
        return done
    laq, use_actions = TRUNKS[name]
    config = cfg.trunk_actions_config if use_actions else cfg.trunk_latent_config
    stage = load_config(TrunkTrainConfig, config)
    steps = cfg.trunk_steps or stage.steps
    args = [str(VENV_BIN / "hlrp-train-trunk"), f"--config_path={config}", corpus_arg(stage.datasets, roots),
            f"--laq_path={cfg.output_dir / laq / 'laq'}", f"--core.vlm_model_name={vlm}", f"--output_dir={run}",
            f"--steps={steps}", *fresh_or_resume(run, run / "checkpoints" / "last")]  # fmt: skip
    if cfg.batch_size:
        args.append(f"--batch_size={cfg.batch_size}")
    seconds = run_logged(args, cfg.output_dir / "logs" / f"stage2_{name}.log", f"stage 2 {name}", steps, STEP_LINE)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first, final = rows[0], rows[-1]
    losses = {k: [first[k], final[k]] for k in final if k.startswith(("latent_", "action_", "code_"))}
    manifest = json.loads((run / "artifact" / "manifest.json").read_text())
    record = {"supervision": manifest["supervision"], "laq": laq, "losses_first_last": losses,
              "steps": [first["step"], final["step"]], "label_share": final["label_share"]}  # fmt: skip
    return keep(cfg, f"stage2_{name}.json", {**record, "seconds": add_wall(run, seconds)})


def needs_checkpoints(cfg: HLRPTwinConfig) -> bool:
    """Whether some stage-3 run is still to train (and so needs the stage-1/2 outputs themselves)."""
    return any(not run_done(cfg, arm, seed) for arm in cfg.arms for seed in cfg.seeds)


# ----- stage 3 and evaluation ------------------------------------------------------------------------------------
def run_done(cfg: HLRPTwinConfig, arm: str, seed: int) -> bool:
    """A run's training time and evaluation are kept: its checkpoint is no longer needed."""
    names = [f"stage3_{arm}_s{seed}.json", f"eval_{arm}_s{seed}_{cfg.eval_episodes}.json"]
    return all(summary(cfg, n) is not None for n in names)


def train_stage(cfg: HLRPTwinConfig, arm: str, seed: int, labelled: Path, vlm: Path, recordings: dict) -> Path:
    """lerobot-train for one arm and seed; the final checkpoint. Resumes from the last saved checkpoint."""
    from lerobot.configs.train import TrainPipelineConfig

    run = cfg.output_dir / "runs" / f"{arm}_s{seed}"
    config = cfg.scratch_config if arm == "scratch" else cfg.finetune_config
    steps = cfg.policy_steps or load_config(TrainPipelineConfig, config).steps
    final = run / "checkpoints" / f"{steps:06d}" / "pretrained_model"
    if (final / "model.safetensors").is_file() and summary(cfg, f"stage3_{arm}_s{seed}.json") is not None:
        return final
    last = run / "checkpoints" / "last" / "pretrained_model"
    if (last / "train_config.json").is_file():
        args = [f"--config_path={last / 'train_config.json'}", "--resume=true"]
    else:
        fresh_or_resume(run, last)
        args = [
            f"--config_path={config}", f"--dataset.root={labelled}", f"--steps={steps}", f"--seed={seed}",
            f"--save_freq={max(1, steps // 4)}", f"--policy.scheduler_decay_steps={steps}", f"--output_dir={run}",
        ]  # fmt: skip
        trunk = ARMS[arm][1]
        args.append(f"--policy.stage2_artifact={cfg.output_dir / trunk / 'artifact'}" if trunk else
                    f"--policy.core.vlm_model_name={vlm}")  # fmt: skip
        if cfg.batch_size:
            args.append(f"--batch_size={cfg.batch_size}")
    env = {"OMP_NUM_THREADS": str(cfg.torch_threads), "OMP_WAIT_POLICY": cfg.omp_wait_policy}
    log = cfg.output_dir / "logs" / f"stage3_{arm}_s{seed}.log"
    seconds = run_logged([str(VENV_BIN / "lerobot-train"), *args], log, f"stage 3 {arm} seed {seed}", steps,
                         r"step:(\S+) ", env)  # fmt: skip
    saved = json.loads((final / "config.json").read_text())
    stage2 = saved.get("stage2") or {"supervision": "none (scratch)"}
    record = {"seconds": add_wall(run, seconds), "stage2": stage2, "steps": steps, "recordings": recordings}
    keep(cfg, f"stage3_{arm}_s{seed}.json", record)
    return final


def eval_stage(cfg: HLRPTwinConfig, checkpoint: Path | None, name: str) -> dict:
    """lerobot-eval of a checkpoint on the comparison's unseen poses; successes, episodes, mean return."""
    filename = f"eval_{name}_{cfg.eval_episodes}.json"
    info = summary(cfg, filename)
    if info is None:
        out = cfg.output_dir / "eval" / f"{name}_{cfg.eval_episodes}"
        batch = min(cfg.eval_batch_size, cfg.eval_episodes)
        if out.exists():
            shutil.rmtree(out)
        args = [
            str(VENV_BIN / "lerobot-eval"), f"--policy.path={checkpoint}", "--env.type=so101_twin",
            "--env.task=LiftCube", "--env.cameras=[front,wrist]", "--env.observation_height=96",
            "--env.observation_width=128", "--env.depth=false", "--env.segmentation=false",
            f"--eval.n_episodes={cfg.eval_episodes}", f"--eval.batch_size={batch}", "--eval.use_async_envs=false",
            "--policy.device=cpu", f"--seed={cfg.eval_seed}", f"--output_dir={out}",
        ]  # fmt: skip
        if cfg.eval_episode_length:
            args.append(f"--env.episode_length={cfg.eval_episode_length}")
        env = {"OMP_NUM_THREADS": str(cfg.torch_threads), "OMP_WAIT_POLICY": cfg.omp_wait_policy}
        batches = -(-cfg.eval_episodes // batch)
        pattern = r"Stepping through eval batches: .*?\| *(\d+)/\d+"
        seconds = run_logged(args, cfg.output_dir / "logs" / f"eval_{name}.log", f"eval {name}", batches, pattern, env)
        overall = json.loads((out / "eval_info.json").read_text())["overall"]
        info = keep(cfg, filename, {"overall": overall, "seconds": seconds})
    overall = info["overall"]
    return {
        "successes": round(overall["pc_success"] * overall["n_episodes"] / 100),
        "episodes": overall["n_episodes"],
        "mean_return": overall["avg_sum_reward"],
        "eval_s": info["seconds"],
    }


# ----- the tables ------------------------------------------------------------------------------------------------
def minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f} min"


def upstream_tables(results: dict) -> list[str]:
    recorded = results.get("recordings") or {}
    lines = (
        [
            f"recordings: {sum(r['episodes'] for r in recorded.values())} episodes in "
            f"{minutes(sum(r['seconds'] for r in recorded.values()))} ({', '.join(recorded)})",
            "",
        ]
        if recorded
        else []
    )
    lines += ["| stage 1 | codes used | perplexity | held-out MSE | copy-frame-t MSE | weighted MSE | cube / moving "
             "finger MSE | wall |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, m in results["stage1"].items():
        by_class = m.get("recon_mse_by_class") or {}
        cells = [f"{m['used_codes']}/{m['codebook_size']}", f"{m['perplexity']:.2f}", f"{m['recon_mse']:.5f}",
                 f"{m['copy_baseline_mse']:.5f}", f"{m['recon_mse_weighted'] or float('nan'):.5f}",
                 f"{by_class.get('cube', float('nan')):.5f} / {by_class.get('moving_finger', float('nan')):.5f}",
                 minutes(m["seconds"])]  # fmt: skip
        lines.append(f"| {name} ({m['loss_weighting']}) | " + " | ".join(cells) + " |")
    lines += ["", "| stage 2 | supervision | LAQ | losses, first -> last window | wall |", "|---|---|---|---|---:|"]
    for name, m in results["stage2"].items():
        losses = ", ".join(f"{k} {a:.3f} -> {b:.3f}" for k, (a, b) in m["losses_first_last"].items())
        lines.append(f"| {name} | {m['supervision']} | {m['laq']} | {losses} | {minutes(m['seconds'])} |")
    return lines


def stage3_table(cfg: HLRPTwinConfig, results: dict) -> list[str]:
    runs = results["stage3"]
    head = " | ".join(f"seed {s}" for s in cfg.seeds)
    lines = [f"| stage 3 arm | {head} | pooled, Wilson 95% | mean return | train wall (mean) | eval wall (mean) |",
             "|---" * (5 + len(cfg.seeds)) + "|"]  # fmt: skip
    pooled = {}
    for arm in cfg.arms:
        per_seed = [runs[arm][str(s)] for s in cfg.seeds]
        pooled[arm] = wilson(sum(r["successes"] for r in per_seed), sum(r["episodes"] for r in per_seed))
        cells = [f"{r['successes']}/{r['episodes']}" for r in per_seed]
        mean_return = sum(r["mean_return"] for r in per_seed) / len(per_seed)
        wall, eval_wall = (sum(r[k] for r in per_seed) / len(per_seed) for k in ("train_s", "eval_s"))
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {pooled[arm]} | {mean_return:.1f} | {minutes(wall)} | "
                     f"{minutes(eval_wall)} |")  # fmt: skip
    lines += ["", "| difference | pooled, Newcombe 95% |", "|---|---|"]
    results["differences"] = {}
    for a, b in DIFFERENCES:
        if a in pooled and b in pooled:
            diff = newcombe(pooled[a], pooled[b])
            results["differences"][f"{a} - {b}"] = {"value": diff.value, "low": diff.low, "high": diff.high}
            lines.append(f"| {a} - {b} | {diff} |")
    return lines


# ----- the experiment --------------------------------------------------------------------------------------------
def upstream(cfg: HLRPTwinConfig) -> tuple[dict, dict, Path | None, Path | None]:
    """Stages 0-2 as the chosen arms need them: (stage-1 summaries, stage-2 summaries, labelled set, trunk). When
    every stage-3 run is kept, the kept summaries are enough: nothing is recorded or trained."""
    laqs = sorted({ARMS[a][0] for a in cfg.arms} - {None})
    trunks = sorted({ARMS[a][1] for a in cfg.arms} - {None})
    kept1 = {n: summary(cfg, f"stage1_{n}.json") for n in laqs}
    kept2 = {n: summary(cfg, f"stage2_{n}.json") for n in trunks}
    if not needs_checkpoints(cfg) and all(kept1.values()) and all(kept2.values()):
        return kept1, kept2, None, None
    roots = record_stage(cfg)
    vlm = vlm_dir(cfg)
    stage1 = {n: laq_stage(cfg, n, roots) for n in laqs}
    stage2 = {n: trunk_stage(cfg, n, roots, vlm) for n in trunks}
    return stage1, stage2, data_root(cfg, cfg.labelled_config), vlm


@parser.wrap()
def hlrp_twin(cfg: HLRPTwinConfig) -> dict:
    os.chdir(ROOT)
    (cfg.output_dir / "logs").mkdir(parents=True, exist_ok=True)
    stage1, stage2, labelled, vlm = upstream(cfg)
    records = [data_root(cfg, c).name for c in [*cfg.corpus_configs, cfg.labelled_config]]
    recordings = {name: summary(cfg, f"record_{name}.json") for name in records}
    results: dict = {"recordings": {k: v for k, v in recordings.items() if v}, "stage1": stage1, "stage2": stage2,
                     "stage3": {}}  # fmt: skip
    fingerprints = recordings_fingerprint(cfg) if labelled is not None else None
    for seed in cfg.seeds:
        if fingerprints is not None and not all(run_done(cfg, arm, seed) for arm in cfg.arms):
            check_same_recordings(cfg, fingerprints, seed)
        for arm in cfg.arms:
            done = run_done(cfg, arm, seed)
            checkpoint = None if done else train_stage(cfg, arm, seed, labelled, vlm, fingerprints)
            entry = eval_stage(cfg, checkpoint, f"{arm}_s{seed}")
            trained = summary(cfg, f"stage3_{arm}_s{seed}.json")
            entry.update(train_s=trained["seconds"], supervision=trained["stage2"]["supervision"])
            results["stage3"].setdefault(arm, {})[str(seed)] = entry
    lines = [*upstream_tables(results), "", *stage3_table(cfg, results)]
    write_json(cfg.output_dir / "results.json", results)
    print("\n".join(lines))
    return results


def main() -> None:
    prepare_command_line()
    hlrp_twin()


if __name__ == "__main__":
    main()
