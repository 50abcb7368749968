"""A recording's content fingerprint: what it holds, whatever wrote its files."""

import json
from pathlib import Path


def recording_fingerprint(root: Path) -> dict:
    """What a recording holds (every frame's state and action), independent of how its files were written.

    The twin's floating point differs between CPU kinds, so the same seeds record other demonstrations on another
    machine; experiments that span machines compare these to keep the runs they compare on one recording.
    """
    import hashlib

    import numpy as np
    import pyarrow.parquet as pq

    digest = hashlib.sha256()
    for path in sorted((root / "data").glob("*/*.parquet")):
        table = pq.read_table(path, columns=["episode_index", "frame_index", "observation.state", "action"])
        for column in table.column_names:
            values = table[column].combine_chunks()
            flat = values.flatten() if hasattr(values, "flatten") else values
            digest.update(np.asarray(flat.to_numpy(zero_copy_only=False)).tobytes())
    info = json.loads((root / "meta" / "info.json").read_text())
    return {"sha256": digest.hexdigest(), "episodes": info["total_episodes"], "frames": info["total_frames"]}
