"""Run one HLRP stage under torchrun with a probe (tests/test_hlrp_processes.py):

    python -m torch.distributed.run --nproc_per_node=2 tests/ddp_probe.py <trunk|lerobot> <probe_dir> <out> ARGS...

Every rank records the world size torch.distributed reports, a hash of the model's weights before each optimisation
step (so entry k is the weights after step k - 1), and every file it opens for writing or publishes under the run's
output folder <out>; at exit it writes <probe_dir>/rank<r>.json (not counted as a write of the run).
"""

import atexit
import builtins
import hashlib
import io
import json
import logging
import os
import sys
from pathlib import Path

STAGE, PROBE, OUT = sys.argv[1], Path(sys.argv[2]), os.path.abspath(sys.argv[3])
RANK = int(os.environ["RANK"])
record: dict = {"rank": RANK, "world_size": None, "accelerate_processes": None, "hashes": [], "writes": []}
_open, _replace, _rename = builtins.open, os.replace, os.rename


def _note(path) -> None:
    path = os.path.abspath(os.fspath(path))
    if path.startswith(OUT):
        record["writes"].append(path)


def _probing_open(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
        _note(file)
    return _open(file, mode, *args, **kwargs)


def _probing_move(move):
    def moved(src, dst, *args, **kwargs):
        _note(dst)
        return move(src, dst, *args, **kwargs)

    return moved


builtins.open = io.open = _probing_open
os.replace, os.rename = _probing_move(_replace), _probing_move(_rename)

import safetensors.torch  # noqa: E402  (patched before the stages import save_file from it)

_save_file = safetensors.torch.save_file


def _probing_save_file(tensors, filename, *args, **kwargs):
    _note(filename)
    return _save_file(tensors, filename, *args, **kwargs)


safetensors.torch.save_file = _probing_save_file

import torch.nn.parallel  # noqa: E402

_ddp_init = torch.nn.parallel.DistributedDataParallel.__init__
_kept: list = []  # every DDP model, alive until the rank leaves (see the end of this file)


def _keeping_init(self, *args, **kwargs):
    _ddp_init(self, *args, **kwargs)
    _kept.append(self)


torch.nn.parallel.DistributedDataParallel.__init__ = _keeping_init


def weights_hash(model) -> str:
    import torch.distributed as dist
    from accelerate import PartialState

    # torch.distributed's group (torchrun makes one) and accelerate's view, which decides sharding and DDP
    record["world_size"] = dist.get_world_size() if dist.is_initialized() else 1
    record["accelerate_processes"] = PartialState().num_processes
    model = getattr(model, "module", model)  # under DDP, the wrapped model
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@atexit.register
def _write_record() -> None:
    PROBE.mkdir(parents=True, exist_ok=True)
    with _open(PROBE / f"rank{RANK}.json", "w") as f:
        json.dump(record, f)


def probe_before(module, name: str, model_arg: int) -> None:
    """Wrap module.name so that the weights are hashed before each call (the model is positional arg model_arg)."""
    original = getattr(module, name)

    def wrapped(*args, **kwargs):
        record["hashes"].append(weights_hash(args[model_arg]))
        return original(*args, **kwargs)

    setattr(module, name, wrapped)


sys.argv = [sys.argv[0], *sys.argv[4:]]
if STAGE == "trunk":
    from lerobot_policy_hlrp.commands import train_trunk

    probe_before(train_trunk, "losses", 0)  # losses(model, laq, batch, ...): one call per step
    train_trunk.main()
else:
    from lerobot.scripts import lerobot_train

    probe_before(lerobot_train, "update_policy", 1)  # update_policy(train_metrics, policy, batch, ...)
    lerobot_train.main()

# The stage is done. Freeing DDP's reducer frees gloo's process group with the GIL held, and its destructor waits on a
# worker thread that needs the GIL to free a finished barrier's tensors: now and then a rank hangs there for good
# (pytorch/pytorch#56297; seen in lerobot-train's return). The rank records and leaves without that teardown.
_write_record()
sys.stdout.flush()
sys.stderr.flush()
logging.shutdown()
os._exit(0)
