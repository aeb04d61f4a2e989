//! Evaluation and model selection: per-case metrics and `summary.json` ([`metrics`]), the search
//! for postprocessing that helps ([`postprocessing`]), ensembles of models' probabilities
//! ([`ensembling`]) and the choice of the best configuration or ensemble ([`model_selection`]).

pub mod ensembling;
pub mod metrics;
pub mod model_selection;
pub mod postprocessing;
