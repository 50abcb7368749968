"""HLRP at the real sizes with random weights: the stage-2 step and the share of it spent on online LAQ labelling,
and stage-3 `select_action` latency against LeRobot's `smolvla` on the same SmolVLM2 backbone, one process.

    .venv/bin/python benchmarks/hlrp_speed.py                       # CPU, batch 2 (minutes on 2 cores)
    .venv/bin/python benchmarks/hlrp_speed.py --device=cuda --batch=32 --repeats=10
    .venv/bin/python benchmarks/hlrp_speed.py --tiny=true           # checks the script, measures nothing

Backbone: SmolVLM2-500M-Video-Instruct's published architecture (so101_commands.random_vlm), 16 of its 32 text layers
for both policies (HLRP's stage-2 trunk and SmolVLA's default), frames padded to 512x512. LAQ: HLRP's stage-1 sizes
(LAQConfig defaults = configs/hlrp_laq_oxe.yaml: 256 px, patch 32, 1024 wide, 8 + 8 layers, 2048 x 1 codes of 32).

    stage 2 step ms     one batch of hlrp-train-trunk's multitask step: online LAQ labels of the frame pair (no
                        grad), the trunk on one camera + instruction, latent-flow + action regression losses,
                        backward, AdamW; "labelling ms" is the LAQ call alone inside the same step (the
                        target: under 15% of the step)
    select_action ms    policy.reset(); select_action: one new chunk from two 480x640 cameras, 6-d state, batch 1;
                        hlrp (regression head: one trunk pass), hlrp with the flow head (10 steps), smolvla (prefix
                        + 10 denoising steps through its action expert)

Medians over --repeats after one warm-up; the policies run interleaved so that load from other processes hits all.
"""

import os
import statistics
import sys
from dataclasses import dataclass

os.environ["HF_HUB_OFFLINE"] = "1"

import torch
from lerobot.configs import FeatureType, PolicyFeature, parser
from lerobot.policies.smolvla import SmolVLAConfig, SmolVLAPolicy
from transformers import AutoTokenizer

from lerobot_policy_hlrp import HLRPConfig, HLRPPolicy
from lerobot_policy_hlrp.laq import LAQ, LAQConfig
from lerobot_policy_hlrp.trunk import CoreConfig, SharedCore, load_vlm
from so101_devtools.timing import SpeedBenchConfig, smolvlm_folder, timed_ms
from so101_run_infra.cli import prepare_command_line

CAMERAS = ("observation.images.front", "observation.images.wrist")
TASK = "pick up the red cube and lift it\n"


def features() -> tuple[dict, dict]:
    inputs = {cam: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 480, 640)) for cam in CAMERAS}
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(6,))
    return inputs, {"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))}


@dataclass
class HLRPSpeedConfig(SpeedBenchConfig):
    # the stage-2 step's batch size
    batch: int = 2


@parser.wrap()
def benchmark(bench: HLRPSpeedConfig) -> None:
    device = bench.device

    vlm = smolvlm_folder(bench.tiny)
    layers = 2 if bench.tiny else 16
    chunk = 4 if bench.tiny else 50
    laq_cfg = LAQConfig(image_size=32, patch_size=8, dim=32, spatial_depth=1, temporal_depth=1, decoder_depth=1,
                        heads=2, dim_head=16) if bench.tiny else LAQConfig()  # fmt: skip
    torch.manual_seed(0)
    laq = LAQ(laq_cfg).to(device).eval().requires_grad_(False)
    latent_dim = laq_cfg.code_seq_len * laq_cfg.quant_dim

    # ----- stage 2 --------------------------------------------------------------------------------------------
    core_cfg = CoreConfig(vlm_model_name=str(vlm), num_vlm_layers=layers, latent_dim=latent_dim,
                          code_seq_len=laq_cfg.code_seq_len, codebook_size=laq_cfg.codebook_size,
                          action_dim=32, chunk_size=chunk)  # fmt: skip
    core = SharedCore(core_cfg, load_vlm(str(vlm), False)).to(device)
    core.use_heads(latent=True, codes=False, actions=True)
    params = [p for p in core.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    b = bench.batch
    pair = torch.rand(b, 2, 3, 256, 320, generator=gen).to(device)  # the LAQ camera's frames t and t+k
    frame_t = pair[:, 0]
    enc = AutoTokenizer.from_pretrained(str(vlm))([TASK] * b, padding="max_length", max_length=48, return_tensors="pt")
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    actions = torch.randn(b, chunk, 32, generator=gen).to(device)
    amask = torch.ones_like(actions, dtype=torch.bool)
    label_ms: list[float] = []

    def stage2_step():
        holder = {}

        def label():
            holder["v"] = laq.codes_and_vectors(pair)[1]

        label_ms.append(timed_ms(label, device))
        cond = core.pooled([frame_t], ids, mask)
        loss = core.latent_loss(cond, holder["v"]).mean() + core.action_loss(cond, actions, amask).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    core.train()
    step_ms = [timed_ms(stage2_step, device) for _ in range(bench.repeats + 1)][1:]
    label_ms = label_ms[1:]

    # ----- stage 3 --------------------------------------------------------------------------------------------
    inputs_f, outputs_f = features()
    common = {"device": device, "push_to_hub": False, "input_features": inputs_f, "output_features": outputs_f}
    policies = {}
    for head in ("regression", "flow"):
        cfg = HLRPConfig(**common, load_vlm_weights=False, cameras=["front", "wrist"], n_action_steps=chunk,
                         core=CoreConfig(vlm_model_name=str(vlm), num_vlm_layers=layers, chunk_size=chunk,
                                         action_dim=32, action_head=head))  # fmt: skip
        torch.manual_seed(0)
        policies[f"hlrp ({head} head)"] = HLRPPolicy(cfg).to(device).eval()
    smol_kwargs = {"num_vlm_layers": 2, "resize_imgs_with_padding": (32, 32)} if bench.tiny else {}
    smol_cfg = SmolVLAConfig(**common, vlm_model_name=str(vlm), chunk_size=chunk, n_action_steps=chunk, **smol_kwargs)
    torch.manual_seed(0)
    policies["smolvla"] = SmolVLAPolicy(smol_cfg).to(device).eval()
    enc = AutoTokenizer.from_pretrained(str(vlm))([TASK], padding="max_length", max_length=48, return_tensors="pt")
    obs = {cam: torch.rand(1, 3, 480, 640, generator=gen) for cam in CAMERAS}
    obs["observation.state"] = torch.randn(1, 6, generator=gen)
    obs["observation.language.tokens"] = enc["input_ids"]
    obs["observation.language.attention_mask"] = enc["attention_mask"].bool()
    obs = {k: v.to(device) for k, v in obs.items()}
    latency: dict[str, list[float]] = {name: [] for name in policies}
    names = list(policies)
    for i in range(bench.repeats + 1):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            policy = policies[name]

            def act(policy=policy):
                policy.reset()
                with torch.inference_mode():
                    policy.select_action(dict(obs))

            ms = timed_ms(act, device)
            if i:
                latency[name].append(ms)
        print(f"repeat {i}/{bench.repeats} done", file=sys.stderr, flush=True)

    med_step, med_label = statistics.median(step_ms), statistics.median(label_ms)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} repeats={bench.repeats}")
    print(f"stage 2 (batch {b}): step {med_step:.1f} ms, of which online LAQ labelling {med_label:.1f} ms "
          f"= {med_label / med_step:.1%} (target < 15%), {b / med_step * 1e3:.2f} samples/s")  # fmt: skip
    print(f"{'stage 3 policy':<24} {'params':>12} {'select_action ms':>17}")
    for name, policy in policies.items():
        n = sum(p.numel() for p in policy.parameters())
        print(f"{name:<24} {n:>12,} {statistics.median(latency[name]):>17.1f}")


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
