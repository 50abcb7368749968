"""Pushing what a suite trainer made to the Hugging Face Hub, the way `lerobot-train --policy.push_to_hub` does.

`lerobot-train` (lerobot 0.6.1, scripts/lerobot_train.py and policies/pretrained.py `push_model_to_hub`) creates the
repo (`HfApi.create_repo(exist_ok=True)`), writes a model card (`huggingface_hub.ModelCard` from a template: card
data, model details, inputs and outputs, training data, how to use) into the folder and uploads it in one commit
(`HfApi.upload_folder`). The suite's trainers do the same with `push_folder`, spelled as LeRobot spells it on the
config of the thing pushed: `--policy.push_to_hub/--policy.repo_id` (segdepth-rl-train), `--model.*`
(so101-seg-train), `--laq.*` (hlrp-train-laq), `--artifact.*` (hlrp-train-trunk); datasets go through LeRobot's own
`LeRobotDataset.push_to_hub` (so101-twin-record's `--dataset.push_to_hub`).

The card is written into the pushed folder as README.md (so it stays with the local copy too) and holds the model,
the data, the command that made it and its measured result. huggingface_hub comes with lerobot; it is imported only
when a push happens, so the core stays numpy-only.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import write_text

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"

CARD_TEMPLATE = """---
{{ card_data }}
---

# Model Card for {{ model_name }}

{{ summary }}

Trained with [LeRobot](https://github.com/huggingface/lerobot) and the SO-101 suite's plugins, and pushed the way
`lerobot-train --policy.push_to_hub` pushes a policy.

## Model Details

- **Type:** {{ model_type }}
- **License:** {{ license }}
{% if base_model %}- **Fine-tuned from:** {{ base_model }}
{% endif %}{% for key, value in details.items() %}- **{{ key }}:** {{ value }}
{% endfor %}
{% if features %}## Inputs & Outputs

| Feature | Type | Shape |
| --- | --- | --- |
{% for name, (kind, shape) in features.items() %}| `{{ name }}` | {{ kind }} | `{{ shape }}` |
{% endfor %}
{% endif %}## Training Data

{% for item in data %}- {{ item }}
{% endfor %}
## Training Command

```bash
{{ command }}
```

## Result

{% if result %}| Metric | Value |
| --- | --- |
{% for key, value in result.items() %}| {{ key }} | {{ value }} |
{% endfor %}{% else %}No evaluation was recorded.
{% endif %}
{% if usage %}## How to Use

```bash
{{ usage }}
```
{% endif %}
"""


@dataclass
class HubPushConfig:
    # Upload the result to the Hugging Face Hub when training ends, as lerobot-train's --policy.push_to_hub does
    push_to_hub: bool = False
    # The Hub repo to push to, "user_or_org/name"; required with push_to_hub
    repo_id: str | None = None
    # Create the repo private; None: the Hub's default for the account
    private: bool | None = None
    # Extra tags on the model card (the suite adds "robotics", "lerobot", "so101" and the model type)
    tags: list[str] | None = None
    # The license on the model card
    license: str = "apache-2.0"

    def check(self, flag: str) -> None:
        """Before any work: pushing needs a repo id. `flag` is the group the command spells it under ("model")."""
        check_push(self.push_to_hub, self.repo_id, flag)


def check_push(push_to_hub: bool, repo_id: str | None, flag: str) -> None:
    """Raise, naming `--<flag>.repo_id` and `--<flag>.push_to_hub`, when a push has no well-formed repo id (as
    lerobot-train's TrainPipelineConfig.validate refuses --policy.push_to_hub without --policy.repo_id)."""
    if push_to_hub and not repo_id:
        raise ValueError(
            f"--{flag}.push_to_hub=true needs --{flag}.repo_id=<user_or_org/name> (the Hub repo to push to); "
            f"or pass --{flag}.push_to_hub=false"
        )
    if push_to_hub and repo_id.count("/") != 1:
        raise ValueError(f"--{flag}.repo_id={repo_id!r} must be 'user_or_org/name'")


def is_main_process() -> bool:
    """False on the other ranks of a torchrun / accelerate launch (RANK > 0): only one process pushes."""
    return int(os.environ.get("RANK", "0")) == 0


def command_line(argv: list[str] | None = None) -> str:
    """The command as it was run (`sys.argv`, its program named by its basename), shell-quoted for the card."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
    return " ".join(shlex.quote(a) for a in argv)


def _hub_dataset_ids(datasets: list[str]) -> list[str]:
    """The entries that can be Hub dataset ids (card metadata must hold nothing else): 'user/name', not local."""
    return [
        d for d in datasets if d.count("/") == 1 and not d.startswith(("local/", ".", "/")) and not Path(d).exists()
    ]


def model_card(
    *,
    model_name: str,
    model_type: str,
    summary: str,
    data: list[str],
    result: dict[str, Any] | None,
    hub: HubPushConfig,
    command: str | None = None,
    datasets: list[str] | None = None,
    base_model: str | None = None,
    details: dict[str, Any] | None = None,
    features: dict[str, tuple[str, Any]] | None = None,
    usage: str | None = None,
    pipeline_tag: str = "robotics",
):
    """A `huggingface_hub.ModelCard` in LeRobot's layout: card data (license, library, tags, datasets, base
    model), model details, inputs/outputs, training data, the training command, the result and how to use it.

    `data`: one line per source the model learned from; `features`: name -> (type, shape), as LeRobot lists a
    policy's; `result`: metric -> value.
    """
    from huggingface_hub import ModelCard, ModelCardData

    tags = sorted({"robotics", "lerobot", "so101", model_type, *(hub.tags or [])})
    card_data = ModelCardData(
        license=hub.license,
        library_name="lerobot",
        pipeline_tag=pipeline_tag,
        tags=tags,
        model_name=model_name,
        datasets=_hub_dataset_ids(datasets or []) or None,
        base_model=base_model if base_model and _hub_dataset_ids([base_model]) else None,
    )
    return ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        model_name=model_name,
        model_type=model_type,
        summary=summary,
        license=hub.license,
        base_model=base_model,
        details=details or {},
        features=features or {},
        data=data or ["(not recorded)"],
        command=command or command_line(),
        result=result or {},
        usage=usage,
    )


def push_folder(folder: str | Path, hub: HubPushConfig, card, commit_message: str) -> str:
    """Write `card` into `folder` as README.md, create `hub.repo_id` (if new) and upload the folder in one commit.

    Returns the repo's URL. Symlinked files are uploaded as the files they point to; `*.tmp`, `*.log` and hidden
    files stay behind.
    """
    from huggingface_hub import HfApi

    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"nothing to push: {folder} is not a folder")
    write_text(folder / CARD_NAME, str(card))
    api = HfApi()
    repo_id = api.create_repo(repo_id=hub.repo_id, private=hub.private, exist_ok=True).repo_id
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=folder,
        commit_message=commit_message,
        ignore_patterns=["*.tmp", "*.log", ".*"],
    )
    url = getattr(getattr(info, "repo_url", None), "url", None) or f"https://huggingface.co/{repo_id}"
    logger.info("Model pushed to %s", url)  # lerobot-train's wording
    return url
