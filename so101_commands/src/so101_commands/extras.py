"""The extras of so101_commands, and the console scripts behind them: without its extra a command says what to
install (so101_run_infra.extras) instead of an ImportError traceback."""

from so101_run_infra.extras import Extra, behind_extra

VLM = Extra("so101_commands", "vlm", "so101-make-random-vlm", frozenset({"transformers", "tokenizers"}))
CLUSTER = Extra("so101_commands", "cluster", "so101-submit", frozenset({"submitit", "yaml"}))
# LeRobot's `async` extra: grpcio (grpc) and protobuf (google.protobuf) for its gRPC server and client
SERVE = Extra("so101_commands", "serve", "so101-policy-server", frozenset({"grpc", "google"}))

make_random_vlm = behind_extra("so101_commands.random_vlm:main", VLM)
submit = behind_extra("so101_commands.submit:main", CLUSTER)
policy_server = behind_extra("so101_commands.policy_server:main", SERVE)
