"""benchmarks/twin_policies.py's --policies: the documented spelling, per-policy flags included, parses into the
entries it names (a `|` or `[` inside a bare YAML list item is a parse error, hence the quotes in its docstring)."""

import sys
from pathlib import Path

import draccus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from twin_policies import TwinPoliciesConfig  # noqa: E402


def test_an_entry_with_env_flags_parses_when_quoted(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    flags = "|--env.cameras=[front,wrist]|--env.depth=true"
    cfg = draccus.parse(TwinPoliciesConfig, args=[f'--policies=[a={tmp_path / "a"},"b={tmp_path / "b"}{flags}"]'])
    assert cfg.policies == [f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}{flags}"]
