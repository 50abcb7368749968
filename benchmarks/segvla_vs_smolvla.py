"""What SegVLA's segmentation cues cost next to LeRobot's `smolvla`, at the real model sizes, one process, same inputs.

Run from the repository root:

    .venv/bin/python benchmarks/segvla_vs_smolvla.py                 # real sizes, batch 1 (minutes on 2 cores)
    .venv/bin/python benchmarks/segvla_vs_smolvla.py --repeats=3 --device=cuda

The backbone is SmolVLM2-500M-Video-Instruct's published architecture (text: 960 hidden, 32 layers, 15/5 heads;
vision: SigLIP 768 hidden, 12 layers, patch 16 at 512; pixel-shuffle 4 -> 64 image tokens), written to a local
folder with random weights (no download possible here); SmolVLA keeps its default 16 VLM layers and a 0.75-wide
action expert (720). Both policies use every other SmolVLA default (chunk 50, 10 flow steps, 512x512 padding).

    smolvla   LeRobot's SmolVLAPolicy
    segvla    SegVLAPolicy with SmolVLA's weights plus the cue path on both cameras: ADE20K-sized scores
              (150 classes, 8x8 grid), 16 cue tokens per camera, a 32-d geometry hint, the context vector
    segvla, cues off   the same SegVLA instance with the cue path skipped: segvla minus this row is the cost
              of the cues alone, free of differences between two model instances (memory placement, caches)

Inputs (identical for both): two 480x640 cameras, a 6-d state, a 10-token instruction, fixed noise; for SegVLA
also random Dirichlet scores (B, 150, 8, 8) per camera. Columns, medians over --repeats after one warm-up,
the runs interleaved in a rotating order so that load from other processes hits all alike:

    select_action ms   policy.reset(); policy.select_action(batch) under inference_mode: one full chunk
                       (prefix + 10 denoising steps), batch 1
    train step ms      forward + backward + AdamW step (SmolVLA's preset; expert-only training), batch --batch

Last line: the cue path alone (the per-camera cue builder on SigLIP-sized patch tokens + the three projections),
median of >= 20 runs, as a share of SmolVLA's select_action: the cost of the cues without the run-to-run noise.
"""

import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import torch
from lerobot.configs import FeatureType, PolicyFeature, parser
from lerobot.policies.smolvla import SmolVLAConfig, SmolVLAPolicy
from transformers import AutoTokenizer

from lerobot_policy_segvla import SegVLAConfig, SegVLAPolicy
from so101_devtools.timing import SpeedBenchConfig, smolvlm_folder, timed_ms
from so101_run_infra.cli import prepare_command_line

CAMERAS = ("observation.images.front", "observation.images.wrist")
CLASSES, GRID = 150, 8


def configs(vlm: Path, device: str, tiny: bool) -> tuple[SmolVLAConfig, SegVLAConfig]:
    features = {cam: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 480, 640)) for cam in CAMERAS}
    features["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(6,))
    common = {
        "vlm_model_name": str(vlm),
        "device": device,
        "push_to_hub": False,
        "input_features": features,
        "output_features": {"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))},
    }
    if tiny:  # a smoke run of this script, not a measurement
        common.update(num_vlm_layers=2, resize_imgs_with_padding=(32, 32), chunk_size=4, n_action_steps=4)
    seg = SegVLAConfig(
        **common,
        segmentation_feature_map={cam: f"observation.segmentation.{cam.rsplit('.', 1)[-1]}" for cam in CAMERAS},
        segmentation_num_classes=CLASSES,
        segmentation_grid_size=GRID,
        segmentation_task_class_ids=[142],  # ADE20K "plate" (not 47, a sink)
        segmentation_geometry_class_ids=[142, 15],  # plate, table
    )
    return SmolVLAConfig(**common), seg


def inputs(vlm: Path, seg: SegVLAConfig, batch: int, device: str) -> dict:
    gen = torch.Generator().manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(vlm))(["pick up the red cube and lift it\n"] * batch, return_tensors="pt")
    data = {cam: torch.rand(batch, 3, 480, 640, generator=gen) for cam in CAMERAS}
    data["observation.state"] = torch.randn(batch, 6, generator=gen)
    data["action"] = torch.randn(batch, seg.chunk_size, 6, generator=gen)
    data["observation.language.tokens"] = tok["input_ids"]
    data["observation.language.attention_mask"] = tok["attention_mask"].bool()
    dirichlet = torch.distributions.Dirichlet(torch.full((CLASSES,), 0.1))
    for key in seg.segmentation_feature_map.values():
        data[key] = dirichlet.sample((batch, GRID, GRID)).permute(0, 3, 1, 2).contiguous()
    return {k: v.to(device) for k, v in data.items()}


@dataclass
class SegVLAVsSmolVLAConfig(SpeedBenchConfig):
    # the training step's batch size
    batch: int = 1


@parser.wrap()
def benchmark(bench: SegVLAVsSmolVLAConfig) -> None:
    device = bench.device

    vlm = smolvlm_folder(bench.tiny)
    smol_cfg, seg_cfg = configs(vlm, device, bench.tiny)
    torch.manual_seed(0)
    smol = SmolVLAPolicy(smol_cfg).to(device)
    seg = SegVLAPolicy(seg_cfg).to(device)
    missing, unexpected = seg.load_state_dict(smol.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("model.segmentation_") for k in missing), (missing, unexpected)
    # "segvla, cues off" is the same SegVLA instance with the cue path skipped: the difference to "segvla" is the
    # cue path alone, free of any difference between two model instances.
    runs = {"smolvla": (smol, True), "segvla": (seg, True), "segvla, cues off": (seg, False)}
    infer = inputs(vlm, seg_cfg, 1, device)
    train = inputs(vlm, seg_cfg, bench.batch, device)
    noise = torch.randn(1, seg_cfg.chunk_size, seg_cfg.max_action_dim, generator=torch.Generator().manual_seed(1))
    noise = noise.to(device)

    def act(name):
        policy, cues = runs[name]
        if policy is seg:
            seg.model.cues_enabled = cues
        policy.eval()
        policy.reset()
        with torch.inference_mode():
            return policy.select_action(dict(infer), noise=noise)

    optimizers = {
        policy: smol_cfg.get_optimizer_preset().build([p for p in policy.parameters() if p.requires_grad])
        for policy in (smol, seg)
    }

    def step(name):
        policy, cues = runs[name]
        if policy is seg:
            seg.model.cues_enabled = cues
        policy.train()
        loss, _ = policy.forward(dict(train))
        optimizers[policy].zero_grad()
        loss.backward()
        optimizers[policy].step()

    # Sanity: freshly initialised cue projections are zero, so the actions are SmolVLA's exactly.
    same = torch.equal(act("smolvla"), act("segvla"))
    latency = {name: [] for name in runs}
    training = {name: [] for name in runs}
    names = list(runs)
    for i in range(bench.repeats + 1):
        order = names[i % len(names) :] + names[: i % len(names)]  # rotate, so no run always goes first
        for name in order:
            ms = timed_ms(lambda name=name: act(name), device)
            if i:
                latency[name].append(ms)
        for name in order:
            ms = timed_ms(lambda name=name: step(name), device)
            if i:
                training[name].append(ms)
        print(f"repeat {i}/{bench.repeats} done", file=sys.stderr, flush=True)

    # The cue path on its own, at the real widths: whole-model differences of a few percent are within the noise
    # of two 5-second runs, this is the work the cues add (per-camera builder + the three projections).
    model = seg.model
    vision = model.vlm_with_expert.config.vision_config
    side = seg_cfg.resize_imgs_with_padding[0] // vision.patch_size
    patches = torch.randn(1, side * side, vision.hidden_size, device=device)
    scores = [infer[key] for key in seg_cfg.segmentation_feature_map.values()]

    def cue_path():
        with torch.inference_mode():
            results = [model.segmentation_builder(patches, s, (0.75, 1.0)) for s in scores]
            tokens = torch.stack([model.segmentation_token_proj(r.tokens) for r in results])
            context = model.segmentation_context_proj(torch.stack([r.tokens.mean(1) for r in results]).mean(0))
            hint = model.segmentation_state_proj(torch.stack([r.geometry for r in results]).mean(0))
            return tokens, context, hint

    cue_ms = statistics.median(timed_ms(cue_path, device) for _ in range(max(20, bench.repeats)))

    params = {"smolvla": sum(p.numel() for p in smol.parameters()), "segvla": sum(p.numel() for p in seg.parameters())}
    params["segvla, cues off"] = params["segvla"]
    threads = torch.get_num_threads()
    print(f"device={device} torch={torch.__version__} threads={threads} repeats={bench.repeats} batch={bench.batch}")
    print(f"segvla == smolvla actions at init (zero cue projections): {same}")
    print(f"{'policy':<17} {'params':>12} {'select_action ms':>17} {'train step ms':>14}")
    med = {name: (statistics.median(latency[name]), statistics.median(training[name])) for name in runs}
    for name in runs:
        print(f"{name:<17} {params[name]:>12,} {med[name][0]:>17.1f} {med[name][1]:>14.1f}")
    for base in ("smolvla", "segvla, cues off"):
        lat, trn = (med["segvla"][k] / med[base][k] - 1 for k in (0, 1))
        print(f"segvla vs {base}: select_action {lat:+.1%}, train step {trn:+.1%} (budget < 5%)")
    share = cue_ms / med["smolvla"][0]
    print(f"cue path alone, {len(scores)} cameras: {cue_ms:.2f} ms = {share:.3%} of smolvla's select_action")
    print(f"cue parameters: +{params['segvla'] - params['smolvla']:,}")


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
