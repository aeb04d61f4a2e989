//! nnU-Net's command-line habits: single-dash long flags (`-tr`, `-pl`, `-device`, `-chk`),
//! underscores in flag names (`--save_probabilities`), `--c` for continue, and the binary invoked
//! through a link named like an nnU-Net command (`nnUNetv2_train`).
//!
//! Arguments are rewritten to the GNU-style long options clap parses before parsing, so every
//! command accepts both spellings.

use std::ffi::OsString;

/// nnU-Net's abbreviations and the long option each stands for.
const RENAMES: &[(&str, &str)] = &[
    ("tr", "trainer"),
    ("pl", "planner"),
    ("chk", "checkpoint"),
    ("np", "num-processes"),
    ("c", "continue"),
];

/// Rewrites one flag name (without dashes) to its long option name.
fn long_name(name: &str) -> String {
    let name = name.replace('_', "-");
    RENAMES
        .iter()
        .find(|(from, _)| *from == name)
        .map(|(_, to)| to.to_string())
        .unwrap_or(name)
}

/// Rewrites nnU-Net-style flags to GNU-style long options; everything after a bare `--` and every
/// value that is not a flag (including negative numbers) is left alone.
pub(crate) fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for arg in args {
        let Some(text) = arg.to_str().filter(|_| !passthrough) else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let rewritten = if let Some(rest) = text.strip_prefix("--") {
            Some(rest)
        } else if let Some(rest) = text.strip_prefix('-') {
            // `-tr`, `-device`, `-overwrite_plans_name`: a single dash and two or more letters.
            // `-d`, `-c` (one letter) stay short options; `-1` stays a number.
            let flag_part = rest.split('=').next().unwrap_or("");
            (flag_part.len() >= 2 && rest.starts_with(|c: char| c.is_ascii_alphabetic()))
                .then_some(rest)
        } else {
            None
        };
        match rewritten {
            Some(rest) => {
                let (name, value) = match rest.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (rest, None),
                };
                let mut s = format!("--{}", long_name(name));
                if let Some(v) = value {
                    s.push('=');
                    s.push_str(v);
                }
                out.push(OsString::from(s));
            }
            None => out.push(arg),
        }
    }
    out
}

/// nnU-Net's command names and the `nnunet` subcommand each corresponds to.
pub(crate) const NNUNET_COMMANDS: &[(&str, &str)] = &[
    ("nnUNetv2_plan_and_preprocess", "plan-and-preprocess"),
    ("nnUNetv2_extract_fingerprint", "extract-fingerprint"),
    ("nnUNetv2_plan_experiment", "plan"),
    ("nnUNetv2_preprocess", "preprocess"),
    ("nnUNetv2_train", "train"),
    ("nnUNetv2_predict", "predict"),
    ("nnUNetv2_predict_from_modelfolder", "predict"),
    ("nnUNetv2_find_best_configuration", "find-best-config"),
    ("nnUNetv2_ensemble", "ensemble"),
    ("nnUNetv2_evaluate_folder", "evaluate"),
    ("nnUNetv2_evaluate_simple", "evaluate-simple"),
    (
        "nnUNetv2_determine_postprocessing",
        "determine-postprocessing",
    ),
    ("nnUNetv2_apply_postprocessing", "apply-postprocessing"),
    ("nnUNetv2_convert_MSD_dataset", "convert-msd"),
    ("nnUNetv2_move_plans_between_datasets", "move-plans"),
    ("nnUNetv2_export_model_to_zip", "export-model"),
    (
        "nnUNetv2_install_pretrained_model_from_zip",
        "install-model",
    ),
    ("nnUNetv2_plot_overlay_pngs", "plot-overlay"),
];

/// What the program name asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Invocation {
    /// Called as `nnunet` (or any name that is not an nnU-Net command).
    Nnunet,
    /// Called as an nnU-Net command that maps to this subcommand.
    Subcommand(&'static str),
}

/// Interprets the program name (`argv[0]`).
pub(crate) fn invocation(argv0: &std::path::Path) -> Invocation {
    let name = argv0
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("nnunet");
    let name = name.strip_suffix(".exe").unwrap_or(name);
    NNUNET_COMMANDS
        .iter()
        .find(|(command, _)| *command == name)
        .map(|(_, sub)| Invocation::Subcommand(sub))
        .unwrap_or(Invocation::Nnunet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn nnunet_flags_become_long_options() {
        assert_eq!(
            norm(&[
                "train",
                "4",
                "3d_fullres",
                "0",
                "-tr",
                "nnUNetTrainer_50epochs",
                "--c"
            ]),
            [
                "train",
                "4",
                "3d_fullres",
                "0",
                "--trainer",
                "nnUNetTrainer_50epochs",
                "--continue"
            ]
        );
        assert_eq!(
            norm(&[
                "-device",
                "cpu",
                "-chk",
                "checkpoint_best",
                "-np",
                "4",
                "--npz"
            ]),
            [
                "--device",
                "cpu",
                "--checkpoint",
                "checkpoint_best",
                "--num-processes",
                "4",
                "--npz"
            ]
        );
        assert_eq!(
            norm(&[
                "-pl",
                "nnUNetPlannerResEncM",
                "-overwrite_plans_name",
                "X",
                "-gpu_memory_target=8"
            ]),
            [
                "--planner",
                "nnUNetPlannerResEncM",
                "--overwrite-plans-name",
                "X",
                "--gpu-memory-target=8"
            ]
        );
        assert_eq!(
            norm(&["--verify_dataset_integrity", "--save_probabilities"]),
            ["--verify-dataset-integrity", "--save-probabilities"]
        );
    }

    #[test]
    fn short_flags_numbers_and_passthrough_stay() {
        let unchanged = [
            "-d",
            "4",
            "-c",
            "2d",
            "3d_fullres",
            "-f",
            "0",
            "-p",
            "nnUNetPlans",
            "-1",
        ];
        assert_eq!(norm(&unchanged), unchanged);
        assert_eq!(norm(&["--", "-tr"]), ["--", "-tr"]);
    }

    #[test]
    fn program_names() {
        assert_eq!(
            invocation(std::path::Path::new("/usr/bin/nnUNetv2_train")),
            Invocation::Subcommand("train")
        );
        assert_eq!(
            invocation(std::path::Path::new("nnunet")),
            Invocation::Nnunet
        );
    }
}
