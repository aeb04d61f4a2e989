//! Inference: sliding-window prediction and export of predictions in the input's geometry.
