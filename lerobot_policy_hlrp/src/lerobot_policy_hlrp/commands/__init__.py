"""HLRP's pretraining commands: hlrp-train-laq (stage 1) and hlrp-train-trunk (stage 2); pretrain/ holds
their library."""
