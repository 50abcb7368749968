"""The robust_twin learning-curve figure: its points against a hand-computed case, and the figure written."""

from so101_devtools.learning_curve import curve_figure, curve_points, hold_reference

LOOKS = ["none", "unseen"]


def scored(successes, error=None, hold=None):
    out = {"successes": successes, "episodes": 20, "mean_return": 0.0}
    if error is not None:
        out["action_error"] = {"action_mae": error, "loss": 0.1, "hold_mae": hold}
    return out


def results():
    return {
        "segvla": {
            "1": {"none": scored(6, 3.0), "unseen": scored(2, 3.5), "curve": {"2600": {"none": scored(1, 4.0)}}},
            "2": {"none": scored(8, 2.0), "unseen": scored(0), "curve": {"2600": {"none": scored(3, 5.0, hold=4.9)}}},
        },
        "smolvla": {"1": {"none": scored(0), "unseen": scored(0)}},
    }


def test_points_pool_seeds_for_success_and_average_the_error():
    assert curve_points(results(), "segvla", 10400, "none") == [(2600, 4, 40, 4.5), (10400, 14, 40, 2.5)]
    # a seed without a held-out error leaves the mean to the seeds that have one; none at all gives None
    assert curve_points(results(), "segvla", 10400, "unseen") == [(10400, 2, 40, 3.5)]
    assert curve_points(results(), "smolvla", 2600, "unseen") == [(2600, 0, 20, None)]
    assert curve_points(results(), "act", 2600, "none") == []


def test_the_hold_still_reference_is_found_wherever_an_arm_scored_it():
    # scores archived before the reference existed have no hold_mae: the first one that has it, in the look asked
    assert hold_reference(results(), ["smolvla", "segvla"], "none") == 4.9
    assert hold_reference(results(), ["segvla"], "unseen") is None
    assert hold_reference(results(), ["smolvla"], "none") is None


def test_the_figure_is_written(tmp_path):
    path = tmp_path / "curve.png"
    curve_figure(results(), ["segvla", "smolvla", "act"], {"segvla": 10400, "smolvla": 2600, "act": 1}, LOOKS, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
