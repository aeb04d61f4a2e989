//! Experiment planners of nnunet-rs, registered under nnU-Net's class names: the default
//! `ExperimentPlanner` and the residual-encoder presets `nnUNetPlannerResEncM`/`L`/`XL`.
//!
//! The planners arrive with the planning work (fingerprint, plans and preprocessing); until then
//! this crate registers nothing and `nnunet list planners` says so.
