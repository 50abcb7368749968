"""What a cache of `imf`'s view embeddings (imf-cache-embeddings) was made with, and whether it still fits a policy:
the encoder's weights and the source dataset are known by a hash, so a cache is refused once either has changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from .configuration_imf import CACHE_MUST_MATCH, OBS_VIEW_EMBEDDINGS


def dataset_fingerprint(root: str | Path) -> str:
    """A hash of a dataset's meta/info.json (frame and episode counts, features): it changes when episodes are
    added or the dataset is re-recorded."""
    return hashlib.sha256((Path(root) / "meta" / "info.json").read_bytes()).hexdigest()[:16]


def encoder_fingerprint(encoder: nn.Module) -> str:
    """A hash of the encoder's weights: a cache of its embeddings is valid for these weights only."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def refuse_stale_cache(cache: dict, expected: dict, shape: tuple[int, int]) -> None:
    """Raise if `cache` (the cached feature's shape and info) was made for another encoder, weights, size or camera
    set than `expected` (the policy's cache key) and `shape` (V, W), or from a source dataset that has changed since."""
    stale = {k: (cache.get(k), expected[k]) for k in CACHE_MUST_MATCH if cache.get(k) != expected[k]}
    if tuple(cache["shape"]) != shape:
        stale["shape"] = (tuple(cache["shape"]), shape)
    source = cache.get("source_root")
    now = dataset_fingerprint(source) if source and (Path(source) / "meta" / "info.json").is_file() else None
    if now is not None and now != cache.get("source_fingerprint"):
        stale["source dataset (changed since)"] = (cache.get("source_fingerprint"), now)
    if stale:
        details = "; ".join(f"{k}: cache {got!r}, policy {want!r}" for k, (got, want) in stale.items())
        raise ValueError(
            f"the dataset's '{OBS_VIEW_EMBEDDINGS}' cache is stale for this policy ({details}). Rebuild it with "
            "imf-cache-embeddings for this policy (same --policy.siglip_model, weights, encoder_image_size and "
            "cameras), or train on the raw dataset."
        )
