"""The SO-101 6-class segmenter: an EfficientViT-B0 + FPN model (`model`), its COCO and twin data (`data`,
`coco_masks`, `sim_frames`), training and evaluation (`train`, `so101-seg-train`, `so101-seg-eval`) and inference
(`infer`). Nothing is imported here: `import so101_segmenter.model` loads the model alone, and `sim_frames` (the
simulator, behind the `sim` extra) only when asked for."""
