"""What every suite command stands on, one module each: preparing the command line for LeRobot's parser (`cli`),
rewriting what draccus decodes a config from, for old saved names and nested defaults (`config_decoding`), atomic writes
(`atomic`) and checkpoint publishing (`checkpoints`), resume states (`resume_state`) and the random streams they restore
(`rng`), run folders (`runs`), the Hub push (`hub`), loading torch pickles only when trusted (`pickled`), success rates
with their intervals (`stats`), console scripts behind an extra (`extras`).

Numpy only; torch is imported by the functions that need it."""
