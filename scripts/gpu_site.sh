#!/usr/bin/env bash
# The suite on a lent GPU machine, which has its own Python 3.12 with PyTorch (CUDA), transformers, numpy, pandas,
# pyarrow, OpenCV and friends, but no network: scripts/setup.sh cannot install there. Two steps:
#
#   bash scripts/gpu_site.sh pack      # here, after scripts/setup.sh, where PyPI is reachable:
#                                      # writes build/gpu_site.tar.xz (~50 MB) to carry to the GPU machine
#   bash scripts/gpu_site.sh install   # there, in the repository root: unpacks it to /tmp/gpu_site (GPU_SITE
#   . /tmp/gpu_site/env.sh             # overrides) and writes env.sh, which puts it on that Python's path
#
# What the archive holds: every distribution LeRobot 0.6.1 (extras dataset, training, smolvla, timm-dep, diffusion)
# and the suite's packages depend on, at the versions installed in .venv, except those the GPU image holds already
# (IMAGE_HAS) and those a check never imports (NOT_NEEDED): LeRobot, PyAV, MuJoCo, datasets, diffusers, draccus,
# gymnasium, PyOpenGL, transformers 5.5 and tokenizers 0.22 (shadowing the image's newer ones), ...; the suite's own
# packages as metadata only (entry points, LeRobot's plugin discovery), their code read from the working tree
# through PYTHONPATH; and the Debian packages of the EGL/GL loaders (libglvnd), unpacked there only when the machine
# has no libEGL.so.1, for MuJoCo's EGL renderer. numpy is the image's 2.5 (LeRobot asks < 2.3; the check ran on it).
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=build/gpu_site.tar.xz
EXTRAS="dataset,training,smolvla,timm-dep,diffusion"
# The lent GPU machines' image already holds these (its package list, 2026-11; versions there: torch 2.11, numpy
# 2.5, huggingface_hub 1.33, accelerate 1.15, safetensors 0.8): they are not packed. transformers and tokenizers are
# there too, but newer than LeRobot 0.6.1 takes (transformers < 5.6, whose tokenizers <= 0.23.0), so they are packed.
IMAGE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs certifi
charset-normalizer click cloudpickle colorama contourpy cycler einops etils filelock fonttools frozenlist fsspec
h11 h5py hf-xet httpcore httpx huggingface-hub idna imageio jinja2 kiwisolver lazy-loader markdown-it-py markupsafe
matplotlib mdurl mpmath multidict mypy-extensions networkx numpy opencv-python-headless packaging pandas pillow pip
propcache protobuf psutil pyarrow pygments pyparsing python-dateutil pyyaml regex requests rich safetensors scipy
setuptools shellingham six sympy timm torch torchaudio torchvision tqdm triton typer typing-extensions
typing-inspect urllib3 wheel xxhash yarl zipp"
# never imported by the check: experiment tracking, the real arm's servo SDK, a build tool, and torchcodec (it needs
# system FFmpeg libraries the image lacks; LeRobot then decodes with PyAV)
NOT_NEEDED="wandb gitpython gitdb smmap sentry-sdk feetech-servo-sdk pyserial cmake torchcodec"
EXCLUDE="$IMAGE_HAS $NOT_NEEDED"

pack() {
  local stage=build/gpu_site
  rm -rf "$stage" && mkdir -p "$stage/site" "$stage/debs" "$stage/workspace"
  # the suite's distributions: the tracked folders with a pyproject.toml (a stale untracked copy is not one)
  git ls-files '*/pyproject.toml' | xargs -n1 dirname | sort >"$stage/workspace.txt"
  local WORKSPACE
  WORKSPACE=$(cat "$stage/workspace.txt")
  # the closure of what LeRobot and the suite require, read from .venv's installed metadata
  .venv/bin/python - "$EXTRAS" "$EXCLUDE" $WORKSPACE >"$stage/requirements.txt" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, distribution
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

extras, exclude, workspace = sys.argv[1].split(","), set(sys.argv[2].split()), sys.argv[3:]
todo = [("lerobot", set(extras))] + [(name, {"vlm", "sim"}) for name in workspace]
seen: dict[str, set] = {}
while todo:
    name, wanted = todo.pop()
    key = canonicalize_name(name)
    if key in exclude or key.startswith(("nvidia-", "cuda-")) or (key in seen and wanted <= seen[key]):
        continue
    seen.setdefault(key, set()).update(wanted)
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        continue  # an optional dependency .venv does not have
    for line in dist.requires or []:
        req = Requirement(line)
        envs = [{"extra": e} for e in seen[key] | {""}]
        if req.marker is None or any(req.marker.evaluate(env) for env in envs):
            todo.append((req.name, set(req.extras)))
workspace_keys = {canonicalize_name(w) for w in workspace}
for key in sorted(seen):
    if key not in workspace_keys:
        try:
            print(f"{key}=={distribution(key).version}")
        except PackageNotFoundError:
            pass
EOF
  echo "[gpu_site] $(wc -l <"$stage/requirements.txt") distributions to pack"
  .venv/bin/uv pip install -q --python .venv/bin/python --link-mode=copy --no-deps --target "$stage/site" -r "$stage/requirements.txt"
  # the suite's packages: metadata only, the code comes from the working tree
  .venv/bin/uv pip install -q --python .venv/bin/python --link-mode=copy --no-deps --target "$stage/workspace" $(printf './%s ' $WORKSPACE)
  mv "$stage"/workspace/*.dist-info "$stage/site/"
  rm -rf "$stage/workspace" "$stage/site/bin"
  find "$stage/site" -name __pycache__ -type d -prune -exec rm -rf {} +
  rm -rf "$stage/site/mujoco/experimental"  # MuJoCo Studio and its GUI libraries (~40 MB): never imported
  # the EGL/GL loaders, as Debian packages to unpack there (README of the lent machines: libglvnd's loaders)
  (cd "$stage/debs" && { apt-get download -q libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get download -q libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null; }; })
  tar -C "$stage" -cf - site debs requirements.txt workspace.txt | xz -T2 -6 >"$ARCHIVE"
  rm -rf "$stage"
  echo "[gpu_site] wrote $ARCHIVE ($(du -m "$ARCHIVE" | cut -f1) MB): carry it, then run 'bash scripts/gpu_site.sh install' there"
}

install() {
  local dest=${GPU_SITE:-/tmp/gpu_site} python=${PYTHON:-python3}
  if [ ! -f "$ARCHIVE" ]; then
    echo "[gpu_site] $ARCHIVE is missing: run 'bash scripts/gpu_site.sh pack' where PyPI is reachable, then carry it" >&2
    exit 1
  fi
  rm -rf "$dest" && mkdir -p "$dest"
  "$python" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" "$ARCHIVE" "$dest"
  if ! ldconfig -p | grep -q 'libEGL.so.1 '; then
    for f in "$dest"/debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
    ldconfig
  fi
  local src
  src=$(printf "$PWD/%s/src:" $(cat "$dest/workspace.txt"))
  {
    echo "export PYTHONPATH=$src$dest/site\${PYTHONPATH:+:\$PYTHONPATH}"
    echo "export MUJOCO_GL=egl PYOPENGL_PLATFORM=egl HF_HUB_OFFLINE=1"
    # the NVIDIA EGL vendor file, where glvnd's default folders do not name it
    echo "if [ ! -e /usr/share/glvnd/egl_vendor.d/10_nvidia.json ] && [ -e /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ]; then"
    echo "  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json; fi"
  } >"$dest/env.sh"
  # bytecode once, with every core, instead of in each command
  "$python" -m compileall -q -j 0 "$dest/site" >/dev/null 2>&1 || true
  # shellcheck disable=SC1091
  . "$dest/env.sh"
  "$python" -c 'import lerobot, mujoco, torch, transformers; print("[gpu_site] ready: lerobot", lerobot.__version__,
"| torch", torch.__version__, "| cuda", torch.cuda.is_available(), "| transformers", transformers.__version__,
"| mujoco", mujoco.__version__)'
}

case "${1:-}" in
  pack) pack ;;
  install) install ;;
  *) echo "usage: bash scripts/gpu_site.sh pack|install" >&2; exit 2 ;;
esac
