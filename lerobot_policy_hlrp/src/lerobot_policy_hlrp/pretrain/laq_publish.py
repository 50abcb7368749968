"""hlrp-train-laq's publishing: output_dir/laq pushed to the Hub with its model card."""

from so101_run_infra.hub import model_card, push_folder

from .laq_config import LAQTrainConfig


def push_laq(cfg: LAQTrainConfig, result: dict) -> str:
    """Push output_dir/laq (what stage 2's --laq_path takes) with a model card to --laq.repo_id."""
    metrics = result["metrics"]
    shown = ("recon_mse", "copy_baseline_mse", "perplexity", "used_codes", "pairs", "split", "step")
    cameras = sorted({d.camera_key for d in cfg.datasets})
    card = model_card(
        model_name=cfg.laq.repo_id,
        model_type="hlrp_laq",
        summary="HLRP stage 1: a latent action quantiser (LAQ) that encodes what changes between two frames of "
        f"{', '.join(f'`{c}`' for c in cameras)} into {cfg.model.code_seq_len} code(s) of a "
        f"{cfg.model.codebook_size}-entry codebook; hlrp-train-trunk (--laq_path) learns to predict them.",
        data=[
            f"`{d.repo_id}`{f' ({d.root})' if d.root else ''}, camera {d.camera_key}, gap {d.gap_s} s, "
            f"{d.holdout_share:.0%} of the episodes held out for the metrics"
            for d in cfg.datasets
        ],
        result={f"held-out {k}" if k in shown[:5] else k: metrics[k] for k in shown if k in metrics},
        hub=cfg.laq,
        datasets=[d.repo_id for d in cfg.datasets],
        details={
            "Steps": cfg.steps,
            "Batch size": cfg.batch_size,
            "Learning rate": cfg.lr,
            "Image size": cfg.model.image_size,
            "Loss weighting": cfg.loss_weighting,
        },
        usage=f"hf download {cfg.laq.repo_id} --local-dir laq && hlrp-train-trunk --laq_path=laq ...",
    )
    return push_folder(result["laq"], cfg.laq, card, "Upload the LAQ (HLRP stage 1) and readme")
