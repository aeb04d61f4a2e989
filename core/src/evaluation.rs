//! Evaluation: per-case segmentation metrics and nnU-Net's `summary.json`.
