"""The demo: record in the twin, precompute, train segdepth, evaluate it, draw what it saw (so101_devtools.demo holds
its stages and config). Run through `bash scripts/demo.sh`, which sets up the environment first; its arguments come
here, e.g. `bash scripts/demo.sh --config_path=configs/demo_long.yaml`."""

from so101_devtools.demo import main

if __name__ == "__main__":
    main()
