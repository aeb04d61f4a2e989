//! Helpers shared by the integration tests of nnunet-plugins.

pub(crate) mod fixtures;
pub(crate) mod synthetic;
