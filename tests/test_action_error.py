"""`so101-action-error`: a checkpoint's predicted action chunks against the expert's on a held-out recording.

The error is checked against a float64 computation by hand, and, end to end on a tiny ground-truth-cue SegVLA
checkpoint, against the same frames scored with the policy's own calls one by one."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.datasets.factory import resolve_delta_timestamps
from test_policy_contract import CASES, policy_and_processors

from so101_commands import action_error
from so101_run_infra.checkpoint_ref import CheckpointRef


def test_the_chunk_error_skips_padded_steps_and_steps_past_the_executed_ones():
    predicted = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]]])
    expert = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], [[1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]])
    is_pad = torch.tensor([[False, True, False], [False, False, False]])
    sums, count = action_error.chunk_abs_error(predicted, expert, is_pad, steps=2)
    # steps 0-1 only; (0, 1) is padded: |1|,|2| + |0-1|,|0+1| + |1-1|,|1-1|
    assert count == 3
    torch.testing.assert_close(sums, torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match=r"predicted actions \(2, 3, 2\) do not match the expert's \(2, 3, 3\)"):
        action_error.chunk_abs_error(predicted, torch.zeros(2, 3, 3), is_pad, steps=2)


def test_frames_are_every_stride_th_of_each_episode():
    assert action_error.frame_indices([(0, 25), (25, 31)], 10) == [0, 10, 20, 25]
    with pytest.raises(ValueError, match="--stride=0"):
        action_error.frame_indices([(0, 5)], 0)


def test_the_swap_partner_is_the_same_moment_of_the_episode_half_the_recording_away():
    # unequal episodes, as a real-time recording has: the frame half the scored list away from frame 0 is frame 60,
    # of the same episode
    bounds = [(0, 100), (100, 110), (110, 130)]
    indices = action_error.frame_indices(bounds, 10)
    assert indices[len(indices) // 2] == 60
    partners = action_error.partner_indices(bounds, indices)
    # episode k's partner is k + 3 // 2 = k + 1 (cyclically), at the same fraction of its length, rounded down
    assert partners == [*range(100, 110), 110, 0, 50]

    # equal episodes, an even number of them: the frame half the scored list away, as before
    bounds = [(0, 30), (30, 60), (60, 90), (90, 120)]
    indices = action_error.frame_indices(bounds, 7)
    n = len(indices)
    assert action_error.partner_indices(bounds, indices) == [indices[(j + n // 2) % n] for j in range(n)]
    with pytest.raises(ValueError, match=r"--swap_keys needs a recording of 2 or more episodes .* it has 1"):
        action_error.partner_indices([(0, 30)], [0, 7])


@pytest.fixture(scope="module")
def segvla_checkpoint(gt_dataset, tmp_path_factory):
    (case,) = [c for c in CASES if c.type == "segvla"]
    _, _, policy, pre, post = policy_and_processors(case, gt_dataset)
    folder = tmp_path_factory.mktemp("segvla") / "pretrained_model"
    policy.save_pretrained(folder)
    pre.save_pretrained(folder)
    post.save_pretrained(folder)
    return folder


def test_the_error_is_the_policys_own_chunks_against_the_recording(segvla_checkpoint, gt_dataset, tmp_path, capsys):
    out = tmp_path / "scores" / "error.json"
    cfg = action_error.ActionErrorConfig(
        policy=CheckpointRef(path=segvla_checkpoint),
        dataset=action_error.HeldOutDatasetConfig(repo_id="local/twin_demo", root=gt_dataset),
        stride=7,
        batch_size=1,  # flow matching's seeded noise is drawn per batch: one frame a batch, as the calls below
        output=out,
    )
    sys_argv = sys.argv
    sys.argv = ["so101-action-error"]  # parser.wrap reads the command line when given no config object
    try:
        report = action_error.action_error_cli(cfg)
    finally:
        sys.argv = sys_argv
    assert json.loads(out.read_text()) == report
    assert "held-out action error of" in capsys.readouterr().out

    # by hand: the same frames, one at a time, the checkpoint's own calls, float64 sums
    config, policy, pre, post = action_error.load_checkpoint(segvla_checkpoint, "cpu")
    meta = LeRobotDatasetMetadata("local/twin_demo", root=gt_dataset)
    ds = LeRobotDataset("local/twin_demo", root=gt_dataset, delta_timestamps=resolve_delta_timestamps(config, meta))
    frames = [i for ep in meta.episodes for i in range(ep["dataset_from_index"], ep["dataset_to_index"], 7)]
    assert report["frames"] == len(frames) and report["episodes"] == meta.total_episodes == 2
    total, held, n = torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64), 0
    per_episode = {}  # episode -> [summed |error| over joints and steps, steps x joints]
    for i in frames:
        item = ds[i]
        batch = {k: v.unsqueeze(0) for k, v in item.items() if isinstance(v, torch.Tensor)}
        batch["task"] = [item["task"]]
        with torch.no_grad():
            chunk = post(policy.predict_action_chunk(pre(batch)))[0].double()  # (T, 6)
        for t in range(config.n_action_steps):
            if not bool(item["action_is_pad"][t]):
                total += (chunk[t] - item["action"][t].double()).abs()
                ep = per_episode.setdefault(str(int(item["episode_index"])), [0.0, 0])
                ep[0] += float((chunk[t] - item["action"][t].double()).abs().sum())
                ep[1] += 6
                held += (item["observation.state"].reshape(-1, 6)[-1].double() - item["action"][t].double()).abs()
                n += 1
    expected = (total / n).tolist()
    names = meta.features["action"]["names"]
    assert report["action_mae_per_joint"] == pytest.approx(dict(zip(names, expected, strict=True)))
    assert report["action_mae"] == pytest.approx(sum(expected) / 6) and report["action_mae"] > 0
    assert report["action_mae_per_episode"] == pytest.approx({k: v / c for k, (v, c) in per_episode.items()})
    assert len(report["action_mae_per_episode"]) == 2
    assert torch.isfinite(torch.tensor(report["loss"])) and report["loss"] > 0
    hold = (held / n).tolist()  # the reference: the current joint positions held over the chunk
    assert report["hold_mae_per_joint"] == pytest.approx(dict(zip(names, hold, strict=True)))
    assert report["hold_mae"] == pytest.approx(sum(hold) / 6) and report["hold_mae"] != report["action_mae"]


def test_a_recording_without_an_input_the_policy_reads_is_refused_naming_it(segvla_checkpoint, gt_dataset, tmp_path):
    import shutil

    tampered = tmp_path / "pretrained_model"
    shutil.copytree(segvla_checkpoint, tampered)
    config = json.loads((tampered / "config.json").read_text())
    config["input_features"]["observation.images.top"] = {"type": "VISUAL", "shape": [3, 64, 80]}
    (tampered / "config.json").write_text(json.dumps(config))
    cfg = action_error.ActionErrorConfig(
        policy=CheckpointRef(path=tampered),
        dataset=action_error.HeldOutDatasetConfig(repo_id="local/twin_demo", root=gt_dataset),
    )
    with pytest.raises(KeyError, match=r"the policy reads \['observation.images.top'\]"):
        action_error.score(cfg)
    cfg.policy.path = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"expected a pretrained_model folder with a config\.json"):
        action_error.score(cfg)


def test_swapped_inputs_come_from_the_same_moment_of_another_episode(segvla_checkpoint, gt_dataset, tmp_path):
    """--swap_keys: those inputs from another episode's frame at the same moment of it (lerobot-record's real-time
    episodes differ in length under load), every other input and the targets from the scored one; the policy's
    chunks then change, and what cannot be swapped is refused by name. --compare_to: the paired difference per
    episode against another report on the same frames, and a report on other frames refused."""
    meta = LeRobotDatasetMetadata("local/twin_demo", root=gt_dataset)
    ds = LeRobotDataset("local/twin_demo", root=gt_dataset)
    bounds = [(int(ep["dataset_from_index"]), int(ep["dataset_to_index"])) for ep in meta.episodes]
    indices = action_error.frame_indices(bounds, 7)
    partners = action_error.partner_indices(bounds, indices)
    keys = ["observation.images.front", *(k for k in meta.features if k.endswith("_segmentation"))]
    assert len(keys) == 3
    batch, n = action_error.load_batch(ds, indices, 1, 3, keys, partners)
    assert n == 3
    lengths = [stop - start for start, stop in bounds]
    for row in range(n):
        own, partner = ds[indices[1 + row]], ds[partners[1 + row]]
        mine, theirs = int(own["episode_index"]), int(partner["episode_index"])
        assert mine != theirs
        assert int(partner["frame_index"]) == int(own["frame_index"]) * lengths[theirs] // lengths[mine]
        for key in keys:
            torch.testing.assert_close(batch[key][row], partner[key])
        for key in ("observation.state", "observation.images.wrist", "action"):
            torch.testing.assert_close(batch[key][row], own[key])

    def run(swap):
        cfg = action_error.ActionErrorConfig(
            policy=CheckpointRef(path=segvla_checkpoint),
            dataset=action_error.HeldOutDatasetConfig(repo_id="local/twin_demo", root=gt_dataset),
            stride=7,
            swap_keys=swap,
        )
        return action_error.score(cfg)

    plain, swapped = run([]), run(keys)
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    diff = action_error.difference(swapped, tmp_path / "plain.json")
    pairs = [swapped["action_mae_per_episode"][k] - plain["action_mae_per_episode"][k] for k in ("0", "1")]
    assert diff["mean"] == pytest.approx(sum(pairs) / 2) and diff["low"] <= diff["mean"] <= diff["high"]
    assert diff["low"] == pytest.approx(min(pairs)) and diff["high"] == pytest.approx(max(pairs))  # 2 episodes
    other = dict(plain, stride=5)
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match=r"not scored on the same frames \(differs in \['stride'\]\)"):
        action_error.difference(swapped, tmp_path / "other.json")
    assert swapped["swapped_keys"] == keys and plain["swapped_keys"] == []
    assert swapped["hold_mae"] == pytest.approx(plain["hold_mae"])  # same targets, same state
    assert swapped["action_mae"] != pytest.approx(plain["action_mae"], abs=1e-6)  # the front camera reaches the chunks
    with pytest.raises(ValueError, match=r"only inputs \(observation\.\*\) are swapped"):
        run(["action"])
    with pytest.raises(KeyError, match=r"--swap_keys: \['observation.images.top'\] are not in"):
        run(["observation.images.top"])
