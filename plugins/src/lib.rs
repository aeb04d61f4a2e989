//! Built-in extensions of nnunet-rs: readers/writers of image formats, losses, augmentations and
//! network architectures, each registered under nnU-Net's name.

pub mod architectures;
pub mod augmentations;
pub mod conversion;
pub mod losses;
pub mod readers;
pub mod synthetic;
