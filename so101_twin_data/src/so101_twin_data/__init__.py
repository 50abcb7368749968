"""The segmenter's training data made by the twin: frames rendered with their exact masks and depth (`sim_frames`,
`so101-seg-render`) and labels for a recording of the user's own scene, the twin posed at each frame's joints
(`autolabel*`, `so101-seg-autolabel`). It imports the twin and MuJoCo; the segmenter (`so101_segmenter`) that
trains on what it writes and runs on a real arm imports neither. Nothing is imported here."""
