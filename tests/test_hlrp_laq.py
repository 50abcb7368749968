"""HLRP stage 1: the LAQ model (NSVQ, dead codes, save/load), frame pairs from LeRobot datasets, hlrp-train-laq."""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import draccus
import numpy as np
import pytest
import torch
from clitools import VENV_BIN, run_cli
from run_again import mtimes, nothing_to_do

from lerobot_policy_hlrp.commands.train_laq import split_episodes, train
from lerobot_policy_hlrp.laq import LAQ, LAQConfig, LAQOutput, laq_checkpoint_hash
from lerobot_policy_hlrp.pretrain.frame_pairs import FramePairs, gap_frames, pair_starts
from lerobot_policy_hlrp.pretrain.laq_config import LAQTrainConfig
from lerobot_policy_hlrp.pretrain.laq_evaluation import GRID_COLUMNS, grid_header, grid_title, write_grid
from so101_run_infra.cli import OutputRefused
from so101_run_infra.runs import RUN_FINISHED

ROOT = Path(__file__).resolve().parent.parent
FRONT = "observation.images.front"


def tiny(**overrides) -> LAQConfig:
    settings = dict(
        image_size=16, patch_size=4, dim=32, spatial_depth=1, temporal_depth=1, decoder_depth=1, heads=2,
        dim_head=16, codebook_size=8, quant_dim=8, dead_code_every=0,
    )  # fmt: skip
    return LAQConfig(**{**settings, **overrides})


def random_pair(b: int = 3, h: int = 20, w: int = 28, seed: int = 0) -> torch.Tensor:
    """[b, 2, 3, h, w]: frames t and t+k."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)], dim=1)


# ----- model ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code_seq_len", [1, 2])
def test_forward_and_labels_have_the_documented_shapes(code_seq_len):
    torch.manual_seed(0)
    model = LAQ(tiny(code_seq_len=code_seq_len)).train()
    pair = random_pair()  # 20x28: not the model's size, not square
    out = model(pair)
    assert isinstance(out, LAQOutput)
    assert out.recon.shape == (3, 3, 16, 16)
    assert out.indices.shape == (3, code_seq_len) and out.indices.dtype == torch.long
    assert out.loss.requires_grad and out.loss.ndim == 0 and out.recon_loss.ndim == 0
    assert isinstance(out.perplexity, torch.Tensor) and 1.0 <= out.perplexity.item() <= 3 * code_seq_len + 1e-4
    assert isinstance(out.used_codes, int) and out.used_codes == len(out.indices.unique())
    indices, vectors = model.codes_and_vectors(pair)
    assert indices.shape == (3, code_seq_len) and indices.dtype == torch.long
    assert vectors.shape == (3, code_seq_len, 8) and vectors.dtype == torch.float32


def test_bad_frames_are_refused_naming_the_expected_shape():
    model = LAQ(tiny())
    pair = random_pair()
    with pytest.raises(ValueError, match=r"\[B, 2, 3, H, W\].*got \(2, 3, 20, 28\)"):
        model(pair[0])
    with pytest.raises(ValueError, match=r"\[B, 2, 3, H, W\].*got \(3, 2, 4, 20, 28\)"):
        model(torch.rand(3, 2, 4, 20, 28))
    with pytest.raises(ValueError, match=r"\[B, 2, 3, H, W\].*got \(3, 3, 3, 20, 28\)"):
        model(torch.rand(3, 3, 3, 20, 28))  # three frames, not a pair
    with pytest.raises(ValueError, match="float"):
        model.codes_and_vectors((pair * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        tiny(image_size=18)


def test_nsvq_substitutes_the_quantisation_error_with_noise_of_the_same_norm():
    torch.manual_seed(0)
    model = LAQ(tiny())
    z = torch.randn(5, 1, 8)
    q, indices, _ = model.vq(z, stochastic=True)
    hard = model.vq.codebook[indices]
    err = (z - hard).norm(dim=-1)
    assert torch.allclose((q - z).norm(dim=-1), err, atol=1e-5)
    assert not torch.allclose(q, hard)  # training never hands the decoder the code itself
    q_eval, eval_indices, _ = model.vq(z, stochastic=False)
    assert torch.equal(eval_indices, indices) and torch.equal(q_eval, hard)


def test_nsvq_gradient_reaches_the_encoder_and_the_chosen_codes():
    torch.manual_seed(0)
    # predict_residual's zero-initialised output layer passes no gradient upstream at the very first step
    model = LAQ(tiny(predict_residual=False)).train()
    out = model(random_pair(b=4))
    out.loss.backward()
    for name in ("patch_embed.net.1.weight", "spatial.0.attn.to_q.weight", "temporal.0.mlp.0.weight",
                 "pool.cross_attn.to_kv.weight", "to_quant.1.weight"):  # fmt: skip
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    grad = model.vq.codebook.grad
    chosen = out.indices.unique()
    assert (grad[chosen].abs().sum(dim=1) > 0).all()
    others = torch.ones(8, dtype=torch.bool)
    others[chosen] = False
    assert (grad[others] == 0).all()  # only the codes a pair was quantised to move


def test_labels_are_exactly_the_codebook_rows_of_the_nearest_codes():
    torch.manual_seed(0)
    model = LAQ(tiny(codebook_size=16, code_seq_len=2)).train()
    pair = random_pair(b=6)
    indices, vectors = model.codes_and_vectors(pair)
    assert model.training  # the mode is restored
    assert torch.equal(vectors, model.vq.codebook.detach()[indices])
    with torch.no_grad():
        z = model.encode(model.prepare(pair))
    nearest = torch.cdist(z.reshape(-1, 8), model.vq.codebook.detach()).argmin(dim=1).view(6, 2)
    assert torch.equal(indices, nearest)
    again = model.codes_and_vectors(pair)
    assert torch.equal(again[0], indices) and torch.equal(again[1], vectors)  # no noise
    assert model.vq.usage.sum() == 0 and model.vq.train_steps == 0  # labelling does not count as training


@pytest.mark.parametrize("source", ["encoder", "used"])
def test_dead_code_replacement_reinitialises_unused_codes_only(source):
    torch.manual_seed(0)
    model = LAQ(tiny(dead_code_source=source)).train()
    model(random_pair(b=4))  # fills the recent encoder outputs
    vq = model.vq
    vq.usage.zero_()
    vq.usage[[1, 5]] = torch.tensor([3, 1])
    before = vq.codebook.detach().clone()
    assert vq.replace_dead_codes() == 6
    after = vq.codebook.detach()
    dead = [i for i in range(8) if i not in (1, 5)]
    assert torch.equal(after[[1, 5]], before[[1, 5]])
    assert (after[dead] != before[dead]).any(dim=1).all()
    assert vq.usage.sum() == 0
    pool = vq.recent[: int(vq.recent_count)] if source == "encoder" else before[[1, 5]]
    scale = pool.pow(2).mean().sqrt()
    # each new code is a source vector plus small noise
    assert (torch.cdist(after[dead], pool).min(dim=1).values < 0.2 * scale * 8**0.5).all()


def test_dead_codes_are_replaced_on_schedule_in_training_only():
    torch.manual_seed(0)
    model = LAQ(tiny(codebook_size=64, dead_code_every=3)).train()
    pair = random_pair(b=2)
    for _ in range(3):
        model(pair)
    assert model.vq.last_replaced == 0 and model.vq.usage.sum() == 3 * 2
    model(pair)  # the 4th training forward starts with a replacement of the codes unused in the first 3
    assert model.vq.last_replaced >= 64 - 6 and model.vq.usage.sum() == 2
    model.eval()
    with torch.no_grad():
        model(pair)
    assert model.vq.usage.sum() == 2 and model.vq.train_steps == 4


def test_save_and_load_round_trip_and_the_checkpoint_hash(tmp_path):
    torch.manual_seed(0)
    model = LAQ(tiny(code_seq_len=2, dead_code_every=2)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pair = random_pair()
    for _ in range(3):
        optimizer.zero_grad()
        model(pair).loss.backward()
        optimizer.step()
    folder = tmp_path / "laq"
    model.save_pretrained(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["laq"]  # no temp folder left behind
    assert json.loads((folder / "config.json").read_text())["code_seq_len"] == 2
    loaded = LAQ.from_pretrained(folder)
    assert not loaded.training
    model.eval()
    with torch.no_grad():
        a, b = model(pair), loaded(pair)
    assert torch.equal(a.recon, b.recon) and torch.equal(a.indices, b.indices)
    for x, y in zip(model.codes_and_vectors(pair), loaded.codes_and_vectors(pair), strict=True):
        assert torch.equal(x, y)
    assert torch.equal(loaded.vq.usage, model.vq.usage) and loaded.vq.train_steps == 3  # the schedule survives

    digest = laq_checkpoint_hash(folder)
    assert digest == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    model.save_pretrained(folder)  # over an existing folder
    assert laq_checkpoint_hash(folder) == digest
    with torch.no_grad():
        model.to_pixels.bias[0] += 1e-3
    model.save_pretrained(folder)
    assert laq_checkpoint_hash(folder) != digest


def test_loading_names_the_folder_and_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*nowhere' has no config\.json"):
        LAQ.from_pretrained(tmp_path / "nowhere")
    LAQ(tiny()).save_pretrained(tmp_path / "laq")
    (tmp_path / "laq" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"'.*laq' has no model\.safetensors"):
        LAQ.from_pretrained(tmp_path / "laq")
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        laq_checkpoint_hash(tmp_path / "laq")
    # weights of another size: the strict load fails naming the file
    LAQ(tiny(dim=64)).save_pretrained(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "model.safetensors", tmp_path / "laq" / "model.safetensors")
    with pytest.raises(RuntimeError, match=r"laq/model\.safetensors does not match"):
        LAQ.from_pretrained(tmp_path / "laq")


OFFSETS = [(0, 3), (3, 0), (0, -3), (-3, 0)]


def moving_squares(n: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4x4 square at a random place in frame t, moved by one of 4 offsets (pair i: offset i % 4) in frame t+k."""
    g = torch.Generator().manual_seed(0)
    first, last = torch.zeros(n, 3, size, size), torch.zeros(n, 3, size, size)
    for i in range(n):
        y, x = torch.randint(4, size - 8, (2,), generator=g).tolist()
        dy, dx = OFFSETS[i % 4]
        first[i, :, y : y + 4, x : x + 4] = 1.0
        last[i, :, y + dy : y + dy + 4, x + dx : x + dx + 4] = 1.0
    return first, last


def test_a_tiny_laq_learns_the_motion_through_its_codes():
    """Frame t shows where the square is, never where it goes: only the code can tell the decoder."""
    torch.manual_seed(0)
    model = LAQ(tiny(dim=64, heads=4, dead_code_every=20)).train()
    first, last = moving_squares(16)
    pair = torch.stack([first, last], dim=1)
    copy_baseline = torch.nn.functional.mse_loss(first, last).item()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(250):
        optimizer.zero_grad()
        model(pair).loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        mse = model(pair).recon_loss.item()
        _, vectors = model.codes_and_vectors(pair)
        # the codes of pair i+1 (another offset) with frame t of pair i
        swapped = torch.nn.functional.mse_loss(model.decode_codes(first, vectors.roll(1, dims=0)), last).item()
    assert mse < 0.2 * copy_baseline, (mse, copy_baseline)
    assert swapped > 2 * mse, (swapped, mse)


def test_the_reconstruction_grid_has_a_titled_header_over_its_three_columns(tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    model = LAQ(tiny(image_size=64, patch_size=8))
    pairs = [{"pair": p} for p in random_pair(b=2, h=48, w=64)]
    cfg = LAQTrainConfig()
    title = grid_title(cfg, 250, [{"heldout": [3], "train": [0, 1, 2]}])
    assert title.startswith("LAQ step 250, held-out pairs (front), k = 0.3 s")
    write_grid(model, pairs, [0, 1], tmp_path / "grid.png", "cpu", title)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    band = grid.shape[0] - 2 * 64
    assert grid.shape[1] == 3 * 64 and band > 2 * 12  # the title's lines and the column names above two rows
    header = grid_header(3 * 64, title)
    assert np.array_equal(grid[:band], header) and list(GRID_COLUMNS) == ["frame t", "frame t+k", "recon. t+k"]
    for c in range(3):  # a name over each column, on the band's last line
        assert (header[-14:, c * 64 : (c + 1) * 64] < 100).any()


# ----- frame pairs ----------------------------------------------------------------------------------------------
def test_gap_in_seconds_becomes_frames():
    assert gap_frames(30, 0.3) == 9 and gap_frames(5, 0.6) == 3 and gap_frames(30, 0.01) == 1
    with pytest.raises(ValueError, match="positive"):
        gap_frames(30, 0)


def test_pairs_stay_inside_episodes_and_bad_episodes_are_named():
    starts = pair_starts([(0, 0, 10), (1, 10, 14)], gap=3)
    assert starts.tolist() == [*range(0, 7), *range(10, 11)]
    with pytest.raises(ValueError, match="episode 1 has 4 frames, the frame gap is 4 frames"):
        pair_starts([(0, 0, 10), (1, 10, 14)], gap=4)
    with pytest.raises(ValueError, match="episode 3 is empty"):
        pair_starts([(3, 5, 5)], gap=1)
    with pytest.raises(ValueError, match="episode 2 has a single frame"):
        pair_starts([(0, 0, 10), (2, 10, 11)], gap=1)


def test_held_out_episodes_are_a_reproducible_share():
    train_eps, held = split_episodes(list(range(20)), 0.1, seed=3)
    assert len(held) == 2 and sorted(train_eps + held) == list(range(20))
    assert split_episodes(list(range(20)), 0.1, seed=3) == (train_eps, held)
    assert split_episodes([0, 1], 0.1, seed=3)[1] != []  # at least one held out
    assert split_episodes([4], 0.5, seed=3) == ([4], [])  # never all of them
    assert split_episodes([0, 1, 2], 0.0, seed=3) == ([0, 1, 2], [])


@pytest.mark.slow
def test_frame_pairs_from_a_twin_recording(gt_dataset):
    from lerobot.datasets import LeRobotDataset

    with pytest.raises(ValueError, match=r"no RGB camera 'observation.images.top'.*\['observation.images.front', "):
        FramePairs(gt_dataset, "observation.images.top", 0.3)
    with pytest.raises(ValueError, match=r"episode 0 has \d+ frames, the frame gap is 300 frames \(10 s at 30 fps\)"):
        FramePairs(gt_dataset, FRONT, 10.0)
    pairs = FramePairs(gt_dataset, "front", 0.3)  # short camera names are accepted
    ds = pairs.ds
    episode_of = np.asarray(ds.hf_dataset.data.column("episode_index").to_numpy())
    lengths = np.bincount(episode_of)
    assert pairs.gap == 9 and len(pairs) == int((lengths - 9).sum())
    for i in range(len(pairs)):
        t, tk = pairs.pair(i)
        assert tk - t == 9 and episode_of[t] == episode_of[tk]
    # the last start of episode 0 is its last frame minus the gap; the next pair starts episode 1
    last_of_0 = int(lengths[0]) - 1
    assert pairs.pair(last_of_0 - 9) == (last_of_0 - 9, last_of_0) and pairs.pair(last_of_0 - 8)[0] == last_of_0 + 1
    item = pairs[last_of_0 - 9]
    assert item["pair"].shape == (2, 3, 64, 80) and item["pair"].dtype == torch.float32
    assert item["pair"].min() >= 0 and item["pair"].max() <= 1 and item["episode_index"] == 0
    reference = LeRobotDataset("local/twin_demo", root=gt_dataset)
    assert torch.equal(item["pair"][1], reference[last_of_0][FRONT])
    assert torch.equal(item["pair"][0], reference[last_of_0 - 9][FRONT])
    cached = FramePairs(reference, FRONT, 0.3, episodes=[1], cache_frames=True)
    assert len(cached) == int(lengths[1]) - 9 and cached.pair(0)[0] == int(lengths[0])
    direct = FramePairs(reference, FRONT, 0.3, episodes=[1])
    for i in (0, len(cached) - 1):
        assert torch.equal(cached[i]["pair"], direct[i]["pair"])


# ----- the command ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["hlrp_laq_twin.yaml", "hlrp_laq_oxe.yaml"])
def test_config_files_parse(name):
    cfg = draccus.parse(LAQTrainConfig, config_path=ROOT / "configs" / name, args=["--model.codebook_size=7"])
    assert cfg.model.codebook_size == 7 and cfg.model.dead_code_every > 0
    if name == "hlrp_laq_oxe.yaml":  # HLRP's stage-1 sizes
        m = cfg.model
        assert (m.code_seq_len, m.quant_dim, m.image_size, m.patch_size, m.dim) == (1, 32, 256, 32, 1024)
        assert (m.spatial_depth, m.temporal_depth, m.heads, m.dim_head, cfg.datasets[0].gap_s) == (8, 8, 16, 64, 0.6)


def command() -> list[str]:
    script = VENV_BIN / "hlrp-train-laq"
    return ["hlrp-train-laq"] if script.exists() else [sys.executable, "-m", "lerobot_policy_hlrp.commands.train_laq"]


def corpus(*roots: Path, **fields) -> str:
    """--datasets=[...] of the given recordings (front camera, 0.3 s), as one corpus."""
    entries = [{"repo_id": "local/twin_demo", "root": str(r), "holdout_share": 0.5, **fields} for r in roots]
    return f"--datasets={json.dumps(entries)}"


def twin_args(dataset: Path, out: Path, steps: int) -> list[str]:
    return [
        f"--config_path={ROOT / 'configs' / 'hlrp_laq_twin.yaml'}", corpus(dataset, cache_frames=True),
        f"--steps={steps}", "--batch_size=8", "--warmup_steps=5", "--log_freq=5", "--save_freq=10",
        "--image_freq=10", "--image_pairs=3", "--model.dead_code_every=5", "--eval_max_pairs=32",
        "--torch_threads=1", f"--output_dir={out}",
    ]  # fmt: skip


@pytest.mark.slow
def test_train_command_end_to_end_then_resume(gt_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    run_cli([*command(), *twin_args(gt_dataset, out, 20)], cwd=tmp_path)
    checkpoints = out / "checkpoints"
    assert (checkpoints / "last").resolve().name == "000020"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["000010", "000020", "last"]
    assert {p.name for p in (checkpoints / "last").iterdir()} >= {"laq", "training_state", "train_config.json"}
    assert (out / "images" / "step_000010.png").is_file() and (out / "images" / "step_000020.png").is_file()
    from PIL import Image

    width, height = Image.open(out / "images" / "step_000020.png").size
    assert width == 3 * 64 and height > 3 * 64  # t | t+k | recon, 3 pairs, under a header band
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [5, 10, 15, 20] and sum(h["replaced"] for h in history) > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["step"] == 20 and metrics["split"] == "heldout" and [len(h) for h in metrics["heldout_episodes"]] == [1]
    )
    assert 0 < metrics["recon_mse"] < 1 and 0 < metrics["copy_baseline_mse"] < 1 and metrics["pairs"] == 32
    assert 1 <= metrics["perplexity"] <= 16 and 1 <= metrics["used_codes"] <= 16
    assert metrics["laq_sha256"] == laq_checkpoint_hash(out / "laq")
    assert LAQ.from_pretrained(out / "laq").config.codebook_size == 16

    # run again, in process: the same settings (with or without --resume=true) do nothing; other settings, or more
    # steps without --resume=true, are refused before any data is read
    before = mtimes(out)
    finished = twin_args(gt_dataset, out, 20)
    capsys.readouterr()
    for extra in ([], ["--resume=true"]):
        again = train(draccus.parse(LAQTrainConfig, args=[*finished, *extra]))
        assert again["already_trained"] and again["step"] == 20
    assert capsys.readouterr().out == nothing_to_do(out, "20 steps") * 2
    with pytest.raises(OutputRefused, match=r"\(lr: saved 0\.0005, now 0\.002\): pass --resume=true to continue it"):
        train(draccus.parse(LAQTrainConfig, args=[*finished, "--lr=0.002"]))
    with pytest.raises(OutputRefused, match=r"\(model\.dim: saved 128, now 96\): choose another --output_dir"):
        train(draccus.parse(LAQTrainConfig, args=[*finished, "--model.dim=96"]))
    args = twin_args(gt_dataset, out, 30)
    with pytest.raises(FileExistsError, match=r"\(steps: saved 20, now 30\): pass --resume=true"):
        train(draccus.parse(LAQTrainConfig, args=args))
    with pytest.raises(ValueError, match=r"model\.dim: saved 128, now 96"):
        train(draccus.parse(LAQTrainConfig, args=[*args, "--resume=true", "--model.dim=96"]))
    assert mtimes(out) == before

    run_cli([*command(), *args, "--resume=true"], cwd=tmp_path)
    assert (checkpoints / "last").resolve().name == "000030"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["000020", "000030", "last"]  # keep_checkpoints=2
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [5, 10, 15, 20, 25, 30]
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["step"] == 30 and resumed["heldout_episodes"] == metrics["heldout_episodes"]
    assert resumed["laq_sha256"] != metrics["laq_sha256"]
    # as if killed after its last checkpoint: the same command again names the flag that resumes it
    (out / RUN_FINISHED).unlink()
    with pytest.raises(OutputRefused, match=r"holds an unfinished run of these settings: pass --resume=true"):
        train(draccus.parse(LAQTrainConfig, args=args))


# ----- segmentation-weighted reconstruction ---------------------------------------------------------------------
def test_segmentation_weights_change_the_loss_as_computed_by_hand():
    from lerobot_policy_hlrp.laq import segmentation_pixel_weights, weighted_mse
    from lerobot_policy_hlrp.pretrain.laq_config import SegmentationWeightingConfig
    from so101_core import BACKGROUND, CUBE, MOVING_FINGER, TABLE

    table = SegmentationWeightingConfig().weight_table()  # unlabeled, background, table 0.1; cube, fingers 1.0
    assert table.tolist() == pytest.approx([0.1, 0.1, 0.1, 1.0, 1.0, 1.0])
    # a 2 x 2 frame: the cube leaves the top-left pixel, the moving finger enters the top-right one
    classes = torch.tensor([[[[CUBE, TABLE], [TABLE, BACKGROUND]], [[TABLE, MOVING_FINGER], [TABLE, BACKGROUND]]]])
    weights = segmentation_pixel_weights(classes, table, size=2)
    assert weights.flatten().tolist() == pytest.approx([1.0, 1.0, 0.1, 0.1])  # the heavier class of t and t+k
    recon = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]])  # squared errors 0.01, 0.04, 0.09, 0.16
    by_hand = (1.0 * 0.01 + 1.0 * 0.04 + 0.1 * 0.09 + 0.1 * 0.16) / (1.0 + 1.0 + 0.1 + 0.1)
    assert weighted_mse(recon, target, weights).item() == pytest.approx(by_hand)  # 0.0341
    assert torch.nn.functional.mse_loss(recon, target).item() == pytest.approx(0.075)  # what the plain loss says
    assert weighted_mse(recon, target, torch.ones(1, 2, 2)).item() == pytest.approx(0.075)  # equal weights: plain
    # class maps are resized by nearest neighbour: ids never blend into other classes
    big = classes.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # [1, 2, 4, 4]
    assert torch.equal(segmentation_pixel_weights(big, table, size=2), weights)
    with pytest.raises(ValueError, match=r"class ids in \[6, 6\], weights given for 6"):
        segmentation_pixel_weights(torch.full((1, 2, 2, 2), 6), table, size=2)
    with pytest.raises(ValueError, match=r"missing \['cube'\], unknown \['arm'\]"):
        weights_cfg = SegmentationWeightingConfig()
        weights_cfg.class_weights = {**{k: v for k, v in weights_cfg.class_weights.items() if k != "cube"}, "arm": 1}
        weights_cfg.weight_table()


def test_the_laq_backpropagates_the_weighted_loss_and_reports_the_plain_one():
    model = LAQ(tiny()).train()
    torch.manual_seed(0)
    pair = torch.rand(3, 2, 3, 16, 16)
    weights = torch.rand(3, 16, 16)
    torch.manual_seed(1)
    out = model(pair, weights)
    torch.manual_seed(1)
    plain = model(pair)
    # the untrained residual decoder reconstructs frame t + k as frame t exactly: both losses follow by hand
    first, last = pair.unbind(1)
    assert out.recon_loss.item() == pytest.approx(torch.nn.functional.mse_loss(first, last).item(), rel=1e-5)
    by_hand = ((first - last).square().mean(1) * weights).sum() / weights.sum()
    assert out.loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert plain.loss.item() == pytest.approx(out.recon_loss.item()) and out.loss.item() != pytest.approx(
        plain.loss.item()
    )
    out.loss.backward()
    assert model.to_pixels.weight.grad.abs().sum() > 0


def without_segmentation(dataset: Path, folder: Path) -> Path:
    """A copy of the recording's metadata whose features no longer list the ground-truth segmentation."""
    shutil.copytree(dataset / "meta", folder / "meta")
    info = json.loads((folder / "meta" / "info.json").read_text())
    info["features"] = {k: v for k, v in info["features"].items() if not k.endswith("_segmentation")}
    (folder / "meta" / "info.json").write_text(json.dumps(info))
    return folder


def test_corpus_entries_are_checked_before_any_step(gt_dataset, tmp_path):
    from lerobot.datasets import LeRobotDatasetMetadata

    from lerobot_policy_hlrp.pretrain.frame_pairs import check_whole_gap
    from lerobot_policy_hlrp.pretrain.laq_config import SegmentationWeightingConfig

    info = str(gt_dataset / "meta" / "info.json")
    meta = LeRobotDatasetMetadata("local/twin_demo", root=gt_dataset)
    assert check_whole_gap(meta, 0.3) == 9
    with pytest.raises(
        ValueError, match=rf"{info}: gap_s=0.31 is 9.3 frames at the dataset's fps=30, .*\[0.3, 0.3333\]"
    ):
        check_whole_gap(meta, 0.31)
    base = [f"--output_dir={tmp_path / 'out'}", "--steps=2", "--batch_size=2", "--num_workers=0"]

    def refused(*args: str):
        with pytest.raises(ValueError) as err:
            train(draccus.parse(LAQTrainConfig, args=[*base, *args]))
        assert not (tmp_path / "out" / "checkpoints").exists() and not (tmp_path / "out" / "history.jsonl").exists()
        return str(err.value)

    # a camera the second entry's dataset lacks: named with its file, and the cameras it has
    message = refused(corpus(gt_dataset) [:-1] + ", " + json.dumps({"repo_id": "x/y", "root": str(gt_dataset),
                                                                     "camera_key": "top"}) + "]")  # fmt: skip
    assert f"({info}) has no RGB camera 'top'" in message and "'observation.images.front'" in message
    assert "gap_s=0.25 is 7.5 frames" in refused(corpus(gt_dataset, gap_s=0.25))
    # segmentation weighting on a dataset without ground truth and no segmenter
    bare = without_segmentation(gt_dataset, tmp_path / "bare")
    message = refused(corpus(bare), "--loss_weighting=segmentation")
    assert str(bare / "meta" / "info.json") in message and "observation.images.front_segmentation" in message
    assert "no segmenter is given (--segmentation.segmenter_path is None)" in message
    message = refused(corpus(bare), "--loss_weighting=segmentation", "--segmentation.perception_source=ground_truth")
    assert "has no ground-truth segmentation 'observation.images.front_segmentation'" in message
    with pytest.raises(
        ValueError, match=r"--segmentation\.perception_source=segmenter needs --segmentation\.segmenter_path"
    ):
        LAQTrainConfig(segmentation=SegmentationWeightingConfig(perception_source="segmenter"))


@pytest.mark.slow
def test_a_two_dataset_corpus_trains_a_segmentation_weighted_laq(gt_dataset, tmp_path):
    """Ground truth on one entry, so101_segmenter's model on the other (its metadata without segmentation); the
    metrics name both datasets and report plain, weighted and per-class held-out reconstruction."""
    from test_segvla import save_segmenter_checkpoint

    save_segmenter_checkpoint(tmp_path / "segmenter")
    bare = without_segmentation(gt_dataset, tmp_path / "bare")
    for sub in ("data", "videos"):
        (bare / sub).symlink_to(gt_dataset / sub)
    out = tmp_path / "run"
    cfg = draccus.parse(LAQTrainConfig, config_path=ROOT / "configs" / "hlrp_laq_twin.yaml", args=[
        corpus(gt_dataset, bare, cache_frames=True), "--loss_weighting=segmentation",
        f"--segmentation.segmenter_path={tmp_path / 'segmenter'}", "--model.image_size=32", "--model.dim=32",
        "--steps=4", "--batch_size=4", "--warmup_steps=1", "--log_freq=2", "--save_freq=4", "--image_freq=0",
        "--eval_max_pairs=16", f"--output_dir={out}",
    ])  # fmt: skip
    result = train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result["metrics"] and metrics["loss_weighting"] == "segmentation"
    assert metrics["datasets"] == ["local/twin_demo", "local/twin_demo"] and len(metrics["heldout_episodes"]) == 2
    assert metrics["gap_frames"] == [9, 9] and 1 <= metrics["used_codes"] <= metrics["codebook_size"] == 16
    assert 0 < metrics["recon_mse"] < 1 and 0 < metrics["recon_mse_weighted"] < 1
    assert {"table", "background"} <= set(metrics["recon_mse_by_class"])
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    # the training loss is the weighted one, recon_mse the plain one: they differ
    assert all(h["loss"] != pytest.approx(h["recon_mse"]) for h in history)
