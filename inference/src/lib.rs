//! Inference: sliding-window prediction ([`sliding_window`]), export of predictions in the
//! input's geometry ([`export`]), the [`predictor`] for trained models, the [`cascade`]'s
//! extra inputs, the import of models trained with nnU-Net ([`torch_import`]) and the export and
//! installation of trained models as ZIP files ([`model_sharing`]).

pub mod cascade;
pub mod export;
mod model;
pub mod model_sharing;
pub mod predictor;
pub mod sliding_window;
pub mod torch_import;

pub use export::{
    ExportSettings, ExportedPrediction, LabelHandling, export_prediction_from_logits,
    logits_to_segmentation_in_input_geometry, restrict_to_roi, visible_labels, visible_value,
    write_prediction, write_probabilities_npz,
};
pub use model::network_from_checkpoint;
pub use predictor::{
    CaseInput, FileOutputOptions, FolderCases, FolderSelection, Prediction, Predictor,
    PredictorSettings, available_folds, case_is_predicted, cases_in_folder, channel_count_hint,
    checkpoint_file_name, with_previous_stage, with_regions_of_interest,
};
pub use sliding_window::{
    SlidingWindowSettings, compute_gaussian, compute_steps, predict_sliding_window,
};
