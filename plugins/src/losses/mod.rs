//! Training losses, registered under nnU-Net's class names.
