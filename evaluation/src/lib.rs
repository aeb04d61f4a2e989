//! Evaluation and model selection: per-case metrics and `summary.json` ([`metrics`]), the search
//! for postprocessing that helps ([`postprocessing`]), ensembles of models' probabilities
//! ([`ensembling`]), the choice of the best configuration or ensemble ([`model_selection`]) and
//! the export and import of trained models as ZIP files ([`model_sharing`]).

pub mod ensembling;
pub mod metrics;
pub mod model_selection;
pub mod model_sharing;
pub mod postprocessing;
