"""benchmarks/rollout_loop.py: the stock lerobot-rollout of SegDepth from RGB on the wall-clock twin, timed by the
twin's own timing file. A short rollout's file must hold one consistent loop (every step's capture-to-servos, the
periods summing to the wall time), the table's statistics must read it as the loop it is, and the frozen segmenter
the benchmark measures as a fix must give the segmenter's own outputs."""

from __future__ import annotations

import pytest
import torch
from clitools import load_script

bench = load_script("benchmarks/rollout_loop.py", "rollout_loop_benchmark")
SEGMENTER = bench.REPO / bench.SHIPPED_SEGMENTER


def test_loop_stats_leave_out_the_capture_before_the_loop_and_judge_each_step():
    # lerobot-rollout reads the start pose before its loop: 4 captures, 3 steps; the first period is the setup's
    timing = {"fps": 10, "capture_to_servos_ms": [40.0, 120.0, 50.0], "period_ms": [3000.0, 100.0, 140.0]}
    stats = bench.loop_stats(timing)
    assert stats["steps"] == 3
    assert stats["c2s_on_time"] == pytest.approx(2 / 3)  # 120 ms > 100 ms
    assert stats["period_on_time"] == pytest.approx(2 / 3)  # the last step followed a 140 ms period (> 105)
    assert stats["on_time"] == pytest.approx(1 / 3) and stats["late_steps"] == [1, 2]
    assert stats["rate"] == pytest.approx(1000 * 2 / 240)  # the setup's 3 s left out
    assert stats["c2s_median"] == 50.0 and stats["c2s_max"] == 120.0
    with pytest.raises(ValueError, match="the loop did not run"):
        bench.loop_stats({"fps": 10, "capture_to_servos_ms": [40.0], "period_ms": []})


def test_the_frozen_segmenter_gives_the_segmenters_outputs():
    from lerobot_policy_segdepth.perception import SegmenterStep

    step = SegmenterStep(
        image_keys=["observation.images.wrist"], output_keys=["ids"], disparity_keys=["disparity"], output_size=84,
        input_size=96, device="cpu", checkpoint=str(SEGMENTER),
    )  # fmt: skip
    frame = {"observation.images.wrist": torch.rand(1, 3, 96, 128)}
    with torch.inference_mode():
        before = step.observation(dict(frame))
        assert bench.freeze_segmenter(step) and not bench.freeze_segmenter(step)  # once
        after = step.observation(dict(frame))
    assert (before["ids"] == after["ids"]).float().mean() >= 0.999  # a tie of two logits may flip a pixel
    assert torch.allclose(before["disparity"], after["disparity"], atol=1e-3)


@pytest.mark.slow  # ~30-60 s: one short stock lerobot-rollout, then a few steps of the peer in this process
def test_a_short_rollout_writes_one_consistent_loop(tmp_path):
    checkpoint = bench.save_random_checkpoint(tmp_path / "checkpoint", SEGMENTER, 96, (96, 128))
    fps, duration = 10, 2.0
    run = bench.measure(checkpoint, (96, 128), fps, 1, duration, tmp_path / "runs")
    timing = run["timing"]
    to_servos, periods = timing["capture_to_servos_ms"], timing["period_ms"]
    assert timing["fps"] == fps and run["steps"] == len(to_servos) == timing["actions"]
    assert fps * duration / 2 <= run["steps"] <= fps * duration + 2, run["steps"]
    assert all(c >= 0 for c in to_servos) and all(p > 0 for p in periods)
    # one capture before the loop (the start pose), then one per step; the periods span first to last capture,
    # which the wall time holds with only the disconnect after it
    assert len(periods) == run["steps"]
    assert 0 <= timing["wall_s"] - sum(periods) / 1000 < 2.0, (timing["wall_s"], sum(periods))
    loop = sum(periods[1:]) / 1000
    assert duration - 2 / fps - 0.5 <= loop <= duration + 0.5, loop
    assert 0 < run["rate"] <= fps * 1.1 and 0.0 <= run["on_time"] <= run["c2s_on_time"] <= 1.0
    assert "Rollout finished" in run["log"].read_text()

    peer = bench.peer_times(checkpoint, (96, 128), threads=1, repeats=2, warmup=1)
    assert set(peer) == {*bench.PIECES, bench.TOTAL} and all(v >= 0 for v in peer.values())
    assert peer["segmenter + depth head"] > 0 and peer[bench.TOTAL] >= peer["segmenter + depth head"]
