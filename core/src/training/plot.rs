//! `progress.png`: the training curves nnU-Net draws after every epoch.
