"""HLRP's pretraining, stages 1 and 2: the LAQ trainer (`train_laq`, hlrp-train-laq) on frame pairs (`frame_pairs`),
the shared-trunk trainer (`train_trunk`, hlrp-train-trunk) on its datasets (`trunk_data`, `action_adapter`), the
processes they run in (`processes`).

Imports the policy's models (`..laq`, `..trunk`, `..artifact`); the policy never imports this package, so loading an
`hlrp` checkpoint for inference loads none of it. Nothing is imported here."""
