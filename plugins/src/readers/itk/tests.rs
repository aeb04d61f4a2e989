use ndarray::Array3;
use nnunet_core::io::ImageProperties;
use serde_json::{Map, json};

use super::*;
use crate::readers::test_support::assert_error;

#[test]
fn components_become_channels() {
    let values: Vec<u8> = (0..24).collect();
    let image = ItkImage {
        size: vec![4, 2],
        components: 3,
        geometry: ItkGeometry::identity(2),
        pixels: Pixels::new(PixelType::U8, values),
    };
    let f = sitk_file(image.clone(), Path::new("rgb.mha")).unwrap();
    assert_eq!(f.data.shape(), [3, 1, 2, 4]);
    // voxel (x=1, y=1) holds values 15, 16, 17
    assert_eq!(f.data[[0, 0, 1, 1]], 15.0);
    assert_eq!(f.data[[2, 0, 1, 1]], 17.0);
    assert_eq!(f.spacing, [999.0, 1.0, 1.0]);
    let err = sitk_labels(&image, Path::new("rgb.mha")).unwrap_err();
    assert!(err.to_string().contains("one channel"), "{err}");
}

#[test]
fn output_geometry_prefers_itk_spacing_and_keeps_direction() {
    let mut p = ImageProperties {
        spacing: [3.0, 2.0, 1.0],
        origin: vec![1.0, 2.0, 3.0],
        direction: vec![0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        extra: Map::new(),
    };
    let g = output_geometry(&p, 3);
    assert_eq!(g.spacing, [1.0, 2.0, 3.0]);
    assert_eq!(g.direction, p.direction);
    p.extra
        .insert("sitk_spacing".into(), json!([0.5, 0.25, 4.0]));
    assert_eq!(output_geometry(&p, 3).spacing, [0.5, 0.25, 4.0]);
    let seg = Array3::<i16>::from_elem((1, 2, 2), 300);
    let img = segmentation_image(seg.view(), &p);
    assert_eq!(img.size, [2, 2, 1]);
    assert_eq!(img.pixels.kind, PixelType::U16);
    p.direction = vec![1.0, 0.0, 0.0, 1.0];
    assert_eq!(segmentation_image(seg.view(), &p).size, [2, 2]);
}

#[test]
fn labels_must_be_int16_integers() {
    let mut px = Pixels::new(PixelType::F32, 2.5f32.to_le_bytes().to_vec());
    assert_error(px.labels(Path::new("x.nrrd")), &["x.nrrd", "2.5"]);
    px.scale = Some((2.0, 1.0));
    assert_eq!(px.labels(Path::new("x")).unwrap(), [6]);
}
