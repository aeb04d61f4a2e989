//! Helpers shared by the integration tests of nnunet-plugins.

pub mod synthetic;
