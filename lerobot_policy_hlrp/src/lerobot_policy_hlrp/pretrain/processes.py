"""Several training processes for stages 1 and 2, as `torchrun` or `accelerate launch` starts them.

accelerate 1.x decides between one and several processes from the launcher's environment (LOCAL_RANK, WORLD_SIZE),
but on a machine without CUDA it only recognises several CPU processes when asked for the CPU explicitly: a plain
`Accelerator()` under `torchrun --nproc_per_node=2` on CPUs gives each rank `DistributedType.NO`, a world of 1, so
both train the whole model apart, on the same batches, and both write. LeRobot's lerobot-train passes `cpu=True`
when --policy.device=cpu; these trainers do the same whenever there is no CUDA device.
"""

from __future__ import annotations

import logging


def make_accelerator(mixed_precision: str = "no", **kwargs):
    """accelerate's Accelerator, on the CPU (gloo between ranks) when there is no CUDA device."""
    import torch
    from accelerate import Accelerator

    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available(), **kwargs)


def quiet_unless_main(accelerator, *loggers: logging.Logger) -> None:
    """Only the main process logs INFO: the other ranks keep warnings and errors (their figures are the same run's)."""
    if not accelerator.is_main_process:
        for log in loggers:
            log.setLevel(logging.WARNING)
