"""`imf` speed: action-chunk latency against LeRobot's `diffusion`, and training with cached view embeddings
against encoding every step at the real SigLIP2 size. One process, random weights, no data loading.

    .venv/bin/python benchmarks/imf_speed.py                  # both tables, on the CPU
    .venv/bin/python benchmarks/imf_speed.py --device=cuda --train_batch=64

Table 1, chunk latency (batch 1, 2 cameras 3x96x96, state 6, action 6, 2 observation steps, horizon 16, under
torch.inference_mode, median and p90 of --repeats calls after 3 warm-ups; `policy.reset()` before each call so
every call encodes its frames and samples a new chunk):
    imf 1 step          the plugin's head (384 wide, 12 layers, AttnRes) with its CNN encoder, 1 sampling step
    imf 4 steps         the same model, 4 sampling steps
    imf 1 step, plain   the same head with plain residuals instead of AttnRes (the ablation), 1 step
    diffusion DDIM 10   LeRobot 0.6.1 `diffusion` with `noise_scheduler_type=DDIM`, `num_inference_steps=10`
                        (its fast setting; the default 100 DDPM steps are ~10x slower still), U-Net down_dims
                        (128, 256, 512): 17M parameters against the imf head's 22M (its default 256-512-1024
                        is 67M), ResNet-18 (no pretrained weights: none can be downloaded here; same cost)
  `head ms` times the action head alone on a fixed condition: imf `sample_chunk` vs diffusion
  `conditional_sample`; `params` counts each part.
  --compile=true    both policies' heads and image encoders through torch.compile (imf's transformer and CNN,
                    diffusion's U-Net and ResNet-18; needs a C++ compiler on the CPU; the first call of each
                    pays the compilation)
  --freeze=true     with --compile=true: inductor's freezing, which folds the weights in as constants and prepacks
                    them for oneDNN (inference only; longer compilation); imf acts through its own
                    `--policy.compile_inference=true` path, diffusion's modules are compiled with it by hand
  --bf16=true       imf cast to bf16; diffusion timed twice, in float32 and under bf16 autocast (LeRobot's
                    diffusion cast to bf16 fails: its timestep embedding stays float32), and imf is compared
                    with the faster of the two

Table 2, training samples/s at the real SigLIP2-B/16 @256 size (92.9M-parameter vision tower with random
weights, saved to a temporary folder and loaded from there, as a Hub checkpoint would be), 2 cameras at
256x256, 2 observation steps, the SigLIP2 multiview plan's head: forward + backward + AdamW step on a fixed batch
of --train_batch, median of --train_repeats steps after 1 warm-up:
    encode every step   frames (B, 2, 2, 3, 256, 256) through the frozen tower in every step
    cached embeddings   `observation.view_embeddings` (B, 2, 2, 768), as imf-cache-embeddings stores them
    cached embeddings, compile_train (mode)
                        with --train_compile_mode: the same step and weights through `--policy.compile_train=true`
"""

import dataclasses
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_LEROBOT_HOME", tempfile.mkdtemp(prefix="imf_speed_"))

import torch
from lerobot.configs import FeatureType, PolicyFeature, parser

from so101_devtools.timing import timed_ms
from so101_run_infra.cli import prepare_command_line


def features(side: int, cameras=("front", "wrist")):
    inputs = {f"observation.images.{c}": PolicyFeature(FeatureType.VISUAL, (3, side, side)) for c in cameras}
    inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (6,))
    return inputs, {"action": PolicyFeature(FeatureType.ACTION, (6,))}


def params(module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.1f}M"


def timed(fn, repeats: int, warmup: int = 3, device: str = "cpu") -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = sorted(timed_ms(fn, device) / 1e3 for _ in range(repeats))
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))]


def latency_table(
    device: str, repeats: int, compile_heads: bool = False, bf16: bool = False, freeze: bool = False
) -> None:
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    from lerobot_policy_imf import IMFConfig, IMFPolicy
    from lerobot_policy_imf.meanflow import sample_chunk

    torch.manual_seed(0)
    inputs, outputs = features(96)
    frame = {k: torch.rand(1, 3, 96, 96, device=device) for k in inputs if "images" in k}
    frame["observation.state"] = torch.randn(1, 6, device=device)
    dtype = torch.bfloat16 if bf16 else torch.float32
    imf_frame = {k: v.to(dtype) for k, v in frame.items()}
    rows = []

    # the plugin's head (AttnRes) at 1 and 4 steps, and the same head with plain residuals (the ablation) at 1
    for residual, steps_list in (("attnres", (1, 4)), ("plain", (1,))):
        torch.manual_seed(0)
        imf_cfg = IMFConfig(
            device=device,
            vision_encoder="cnn",
            encoder_image_size=96,
            residual=residual,
            input_features=inputs,
            output_features=outputs,
            compile_inference=compile_heads and freeze,  # the policy's own frozen compiled path
        )
        imf = IMFPolicy(imf_cfg).to(device, dtype).eval()
        if compile_heads and not freeze:
            imf.head = torch.compile(imf.head, dynamic=False)
            imf.backbone.encoder = torch.compile(imf.backbone.encoder, dynamic=False)
        condition = torch.randn(1, imf_cfg.n_obs_steps, imf.condition_dim, device=device, dtype=dtype)
        noise = torch.randn(1, imf_cfg.horizon, 6, device=device, dtype=dtype)
        for steps in steps_list:
            imf.config.num_inference_steps = steps

            def chunk(policy=imf):
                policy.reset()
                policy.predict_action_chunk(dict(imf_frame))

            with torch.inference_mode():
                total = timed(chunk, repeats, device=device)
                acting_head = imf.acting_modules()[1]
                head = timed(
                    lambda s=steps, h=acting_head, c=condition, n=noise: sample_chunk(h, n, c, s),
                    repeats,
                    device=device,
                )
            name = f"imf {steps} step{'s' * (steps > 1)}" + (", plain residuals" if residual == "plain" else "")
            rows.append((name, params(imf.backbone), params(imf.head), total, head))

    diff_cfg = DiffusionConfig(
        device=device,
        input_features=inputs,
        output_features=outputs,
        horizon=16,
        n_action_steps=8,
        noise_scheduler_type="DDIM",
        num_inference_steps=10,
        down_dims=(128, 256, 512),
        pretrained_backbone_weights=None,
        crop_shape=None,
    )
    diffusion = DiffusionPolicy(diff_cfg).to(device).eval()
    if compile_heads:
        diffusion.diffusion.unet = torch.compile(diffusion.diffusion.unet, dynamic=False)
        encoders = diffusion.diffusion.rgb_encoder  # one ResNet per camera, a ModuleList
        for i, encoder in enumerate(encoders):
            encoders[i] = torch.compile(encoder, dynamic=False)
    images = torch.stack([frame[k] for k in diff_cfg.image_features], dim=1)  # (1, V, 3, H, W)
    history = {
        "observation.state": frame["observation.state"][:, None].expand(1, diff_cfg.n_obs_steps, 6),
        "observation.images": images[:, None].expand(1, diff_cfg.n_obs_steps, *images.shape[1:]),
    }
    for autocast_bf16 in (False, True) if bf16 else (False,):
        autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast_bf16)

        def diff_chunk(autocast=autocast):
            diffusion.reset()
            with autocast:
                diffusion.select_action(dict(frame))

        with torch.inference_mode():
            total = timed(diff_chunk, repeats, device=device)
            global_cond = diffusion.diffusion._prepare_global_conditioning(history)
            with autocast:
                head = timed(
                    lambda g=global_cond: diffusion.diffusion.conditional_sample(1, global_cond=g),
                    repeats,
                    device=device,
                )
        name = "diffusion DDIM 10" + (", bf16 autocast" if autocast_bf16 else "")
        rows.append((name, params(diffusion.diffusion.rgb_encoder), params(diffusion.diffusion.unet), total, head))

    variant = (
        ", ".join(["torch.compile"] * compile_heads + ["freezing"] * (compile_heads and freeze) + ["bf16"] * bf16)
        or "eager float32"
    )
    threads = torch.get_num_threads()
    print(f"\n### Action-chunk latency, {device}, {threads} threads, batch 1, {variant}, median / p90 ms")
    print("| policy | encoder params | head params | chunk ms | head ms |")
    print("|---|---|---|---|---|")
    for name, enc, hd, (tm, tp), (hm, hp) in rows:
        print(f"| {name} | {enc} | {hd} | {tm * 1e3:.1f} / {tp * 1e3:.1f} | {hm * 1e3:.1f} / {hp * 1e3:.1f} |")
    imf_row, plain_row = rows[0], rows[2]
    diff_row = min(rows[3:], key=lambda row: row[3][0])  # diffusion at its faster precision
    print(
        f"\nimf 1 step is {diff_row[3][0] / imf_row[3][0]:.1f}x faster per chunk than {diff_row[0]} "
        f"({diff_row[4][0] / imf_row[4][0]:.1f}x for the heads alone; with plain residuals "
        f"{diff_row[3][0] / plain_row[3][0]:.1f}x)"
    )


def training_table(device: str, batch: int, repeats: int, compile_mode: str | None = None) -> None:
    from lerobot_policy_imf import IMFConfig, IMFPolicy
    from lerobot_policy_imf.configuration_imf import OBS_VIEW_EMBEDDINGS
    from so101_devtools.tiny_models import save_siglip_vision

    folder = Path(tempfile.mkdtemp(prefix="siglip2_base_random_"))
    real = {
        "patch_size": 16,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    }
    save_siglip_vision(folder, image_size=256, **real)
    inputs, outputs = features(256)
    cfg = IMFConfig(device=device, siglip_model=str(folder), input_features=inputs, output_features=outputs)
    policy = IMFPolicy(cfg).to(device).train()
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-4)
    t = cfg.n_obs_steps
    raw = {k: torch.rand(batch, t, 3, 256, 256, device=device) for k in inputs if "images" in k}
    common = {
        "observation.state": torch.randn(batch, t, 6, device=device),
        "action": torch.randn(batch, cfg.horizon, 6, device=device),
    }
    with torch.no_grad():
        cached = {OBS_VIEW_EMBEDDINGS: policy.backbone.embed(torch.stack(list(raw.values()), dim=2))}

    def step(batch_dict, trained=policy, opt=optimizer):
        loss, _ = trained.forward(batch_dict)
        opt.zero_grad()
        loss.backward()
        opt.step()

    rows = []
    for name, extra in (("encode every step", raw), ("cached embeddings", cached)):
        median, _p90 = timed(lambda e=extra: step(common | e), repeats, warmup=1, device=device)
        rows.append((name, batch / median, median))
    if compile_mode is not None:  # the same weights through --policy.compile_train; 2 warm-ups pay the compilation
        fused_cfg = dataclasses.replace(cfg, compile_train=True, compile_train_mode=compile_mode)
        fused = IMFPolicy(fused_cfg).to(device).train()
        fused.load_state_dict(policy.state_dict())
        fused_opt = torch.optim.AdamW(fused.get_optim_params(), lr=1e-4)
        median, _p90 = timed(lambda: step(common | cached, fused, fused_opt), repeats, warmup=2, device=device)
        rows.append((f"cached embeddings, compile_train ({compile_mode})", batch / median, median))
    print(
        f"\n### Training at the real SigLIP2-B/16@256 size (tower {params(policy.backbone.encoder)}, frozen; "
        f"trainable {sum(p.numel() for p in policy.get_optim_params()) / 1e6:.1f}M), {device}, batch {batch}"
    )
    print("| inputs | samples/s | ms/step |")
    print("|---|---|---|")
    for name, rate, median in rows:
        print(f"| {name} | {rate:.1f} | {median * 1e3:.0f} |")
    print(f"\ncached embeddings train {rows[1][1] / rows[0][1]:.1f}x faster")
    if compile_mode is not None:
        print(f"compile_train ({compile_mode}): {rows[1][2] / rows[2][2]:.2f}x the eager cached-embedding step's speed")


@dataclass
class IMFSpeedConfig:
    # the torch device both policies run on
    device: str = "cpu"
    # latency calls per policy (after 3 warm-ups); table 1 shows their median and p90
    repeats: int = 20
    # table 2's training batch size
    train_batch: int = 4
    # table 2's timed training steps (after 1 warm-up); it shows their median
    train_repeats: int = 3
    # a table to leave out: latency or training (None: both)
    skip: str | None = None
    # table 1: both policies' heads and image encoders through torch.compile
    compile: bool = False
    # with compile: inductor's freezing (weights folded in as constants, prepacked for oneDNN)
    freeze: bool = False
    # table 1: imf in bf16, diffusion also under bf16 autocast
    bf16: bool = False
    # table 2: one more row, the cached-embedding step through --policy.compile_train with this torch.compile mode
    # (default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs); None: no such row
    train_compile_mode: str | None = None

    def __post_init__(self) -> None:
        if self.skip not in (None, "latency", "training"):
            raise ValueError(f"--skip must be latency or training, got {self.skip!r}")
        if self.freeze and not self.compile:
            raise ValueError("--freeze=true applies to compiled graphs: add --compile=true")


@parser.wrap()
def benchmark(cfg: IMFSpeedConfig) -> None:
    if cfg.freeze:
        import torch._inductor.config

        torch._inductor.config.freezing = True
    if cfg.skip != "latency":
        latency_table(cfg.device, cfg.repeats, cfg.compile, cfg.bf16, cfg.freeze)
    if cfg.skip != "training":
        training_table(cfg.device, cfg.train_batch, cfg.train_repeats, cfg.train_compile_mode)


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
