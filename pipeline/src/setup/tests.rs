use super::*;

#[test]
fn validation_iterations_scale_with_training_iterations() {
    let mut settings = TrainerSettings::default();
    ScheduleOverrides {
        iterations_per_epoch: Some(20),
        ..Default::default()
    }
    .apply(&mut settings);
    assert_eq!(
        (
            settings.num_iterations_per_epoch,
            settings.num_val_iterations_per_epoch
        ),
        (20, 4)
    );
    assert_eq!(scaled_validation_iterations(2, 250, 50), 1);
    assert_eq!(scaled_validation_iterations(13, 250, 50), 3);
    let mut settings = TrainerSettings::default();
    ScheduleOverrides {
        iterations_per_epoch: Some(20),
        val_iterations_per_epoch: Some(7),
        ..Default::default()
    }
    .apply(&mut settings);
    assert_eq!(settings.num_val_iterations_per_epoch, 7);
}

#[test]
fn ds_weights_as_nnunet() {
    let w = deep_supervision_weights(4);
    let raw = [1.0, 0.5, 0.25, 0.0];
    let sum: f64 = raw.iter().sum();
    for (a, b) in w.iter().zip(raw) {
        assert!((a - b / sum).abs() < 1e-15);
    }
    assert_eq!(deep_supervision_weights(1), vec![1.0]);
}
