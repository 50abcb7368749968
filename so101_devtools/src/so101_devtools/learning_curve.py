"""The learning-curve figure of a robust_twin run: success and held-out action error against training steps.

One column per look, two rows (success with its Wilson 95% interval; the held-out action error, mean |a - a_expert| in
degrees), one line per arm (seeds pooled for success, averaged for the error), and a dashed line where a chunk that
holds the current joint positions scores (the floor a policy that learned anything beats). Read from the results the
example writes and archives (`results[arm][seed]` holds the final checkpoint's looks, `["curve"][step]` the earlier
ones), so the figure reprints from docs/data without training.
"""

from __future__ import annotations

from pathlib import Path

from so101_run_infra.stats import wilson


def curve_points(results: dict, arm: str, final_step: int, look: str) -> list[tuple[int, int, int, float | None]]:
    """(step, successes, episodes, mean action error or None) per evaluated checkpoint of `arm`, seeds pooled."""
    by_step: dict[int, list[dict]] = {}
    for run in results.get(arm, {}).values():
        if look in run:
            by_step.setdefault(final_step, []).append(run[look])
        for step, scored in run.get("curve", {}).items():
            if look in scored:
                by_step.setdefault(int(step), []).append(scored[look])
    points = []
    for step, scored in sorted(by_step.items()):
        errors = [s["action_error"]["action_mae"] for s in scored if s.get("action_error")]
        points.append((
            step,
            sum(s["successes"] for s in scored),
            sum(s["episodes"] for s in scored),
            sum(errors) / len(errors) if errors else None,
        ))  # fmt: skip
    return points


def hold_reference(results: dict, arms: list[str], look: str) -> float | None:
    """The held-out error of holding the current joint positions in `look` (a property of the held-out recording,
    the same for every checkpoint scored on it), from the first of the arms' scores that has it; None if none does."""
    for arm in arms:
        for run in results.get(arm, {}).values():
            for scored in [run, *run.get("curve", {}).values()]:
                error = (scored.get(look) or {}).get("action_error") or {}
                if error.get("hold_mae") is not None:
                    return error["hold_mae"]
    return None


def curve_figure(results: dict, arms: list[str], final_steps: dict[str, int], looks: list[str], path: Path) -> None:
    """Writes the figure to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(looks), figsize=(4.2 * len(looks), 6.4), sharex=True, squeeze=False)
    for column, look in enumerate(looks):
        top, bottom = axes[0][column], axes[1][column]
        for arm in arms:
            points = curve_points(results, arm, final_steps[arm], look)
            if not points:
                continue
            steps = [p[0] for p in points]
            rates = [wilson(p[1], p[2]) for p in points]
            line = top.plot(steps, [100 * r.value for r in rates], marker="o", label=arm)[0]
            top.fill_between(steps, [100 * r.low for r in rates], [100 * r.high for r in rates],
                             color=line.get_color(), alpha=0.15)  # fmt: skip
            errors = [(p[0], p[3]) for p in points if p[3] is not None]
            if errors:
                bottom.plot(*zip(*errors, strict=True), marker="o", color=line.get_color(), label=arm)
        hold = hold_reference(results, arms, look)
        if hold is not None:
            bottom.axhline(hold, color="gray", linestyle="--", label="holding still")
        top.set_title(f"look: {look}")
        top.set_ylim(0, 100)
        bottom.set_xlabel("training steps")
        if column == 0:
            top.set_ylabel("success, % (Wilson 95%)")
            bottom.set_ylabel("held-out action error, deg")
            top.legend(fontsize=8)
            bottom.legend(fontsize=8)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
