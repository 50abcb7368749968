"""so101-twin-record's publishing: the merged dataset pushed to the Hub as lerobot-record pushes it."""

import logging

from so101_run_infra.hub import command_line

logger = logging.getLogger(__name__)


def push_dataset(cfg, summary: dict) -> str:
    """Push the merged dataset as lerobot-record does (`LeRobotDataset.push_to_hub(tags, private)`: LeRobot's dataset
    card), the card's description saying how it was recorded: the twin's expert, the command and its success."""
    from lerobot.datasets import LeRobotDataset

    robot, ds = cfg.robot, cfg.dataset
    driven = "" if cfg.driver.policy_path is None else f", driven by the policy {cfg.driver.policy_path} (DAgger)"
    solver, solved = ("the expert", "expert_success") if not driven else ("the policy", "policy_success")
    description = (
        f"Recorded in the SO-101 MuJoCo twin (task {robot.task}, cameras {list(robot.cameras)}, depth={robot.depth}, "
        f"segmentation={robot.segmentation}) by its scripted expert{driven} with `so101-twin-record`: the robot and "
        f"teleoperator plugins through lerobot-record's own calls, stepped in simulated time.\n\n"
        f"Command:\n\n```bash\n{command_line()}\n```\n\n"
        f"Result: {summary['episodes']} episodes, {summary['frames']} frames; {solver} solved "
        f"{summary[solved]} of the episodes recorded by this run."
    )
    LeRobotDataset(ds.repo_id, root=cfg.root).push_to_hub(
        tags=ds.tags, private=ds.private, dataset_description=description
    )
    url = f"https://huggingface.co/datasets/{ds.repo_id}"
    logger.info("Dataset pushed to %s", url)
    return url
