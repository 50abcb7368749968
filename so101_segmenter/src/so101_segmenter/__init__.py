"""The SO-101 6-class segmenter: an EfficientViT-B0 + FPN model (`model`), its COCO and rendered data (`data`,
`coco_masks`), training and evaluation (`train`, `so101-seg-train`, `so101-seg-eval`), inference (`infer`), the
shipped checkpoint (`shipped`) and a checkpoint's segmenter swapped (`swap`). It never imports the twin or MuJoCo:
this is what a real arm installs. The frames the twin renders for it and the labels it makes for a user's recording
are `so101_twin_data`'s. Nothing is imported here: `import so101_segmenter.model` loads the model alone."""
