use std::fs::File;

use ndarray::{Array3, Axis};
use tiff::encoder::{TiffEncoder, colortype};

use super::*;
use crate::readers::test_support::{
    Unreadable, assert_error, assert_files_refused, assert_images_error,
};

fn write_json(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn side_file_names() {
    let p = Path::new("/d/imagesTr/case1_0000.tif");
    assert_eq!(side_file(p, true), Path::new("/d/imagesTr/case1.json"));
    let p = Path::new("/d/labelsTr/case1.tif");
    assert_eq!(side_file(p, false), Path::new("/d/labelsTr/case1.json"));
    let p = Path::new("/d/labelsTr/case_0001.tiff");
    assert_eq!(side_file(p, false), Path::new("/d/labelsTr/case_0001.json"));
    assert_eq!(
        side_file(Path::new("x.TIFF"), true),
        Path::new("x.json"),
        "no channel suffix: the name is kept"
    );
}

#[test]
fn image_and_segmentation_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    // A 16-bit image written through the label writer (max >= 255 gives uint16).
    let volume = Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * 300 + y * 10 + x) as i16);
    let img = dir.path().join("case_0000.tif");
    write_label_tiff(volume.view(), &img).unwrap();
    write_json(
        &dir.path().join("case.json"),
        r#"{"spacing": [3.5, 0.5, 0.25]}"#,
    );
    let read = Tiff3DIO.read_images(&[&img]).unwrap();
    assert_eq!(read.data.shape(), [1, 3, 4, 5]);
    assert_eq!(channel(&read.data, 0), volume.mapv(f32::from));
    assert_eq!(read.properties.spacing, [3.5, 0.5, 0.25]);

    let seg = volume.mapv(|v| v % 4);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let seg_file = out.join("case.tif");
    Tiff3DIO
        .write_segmentation(seg.view(), &seg_file, &read.properties)
        .unwrap();
    let json = std::fs::read_to_string(out.join("case.json")).unwrap();
    assert_eq!(
        json,
        "{\n    \"spacing\": [\n        3.5,\n        0.5,\n        0.25\n    ]\n}"
    );
    let back = Tiff3DIO.read_segmentation(&seg_file).unwrap();
    assert_eq!(back.data.index_axis(Axis(0), 0), seg);
    assert_eq!(back.properties.spacing, [3.5, 0.5, 0.25]);

    // Large labels are stored as uint16.
    let big = seg.mapv(|v| v * 1000);
    Tiff3DIO
        .write_segmentation(big.view(), &seg_file, &read.properties)
        .unwrap();
    let back = Tiff3DIO.read_segmentation(&seg_file).unwrap();
    assert_eq!(back.data.index_axis(Axis(0), 0), big);
}

#[test]
fn float_and_signed_stacks_and_channels() {
    let dir = tempfile::tempdir().unwrap();
    let f = Array3::from_shape_fn((2, 3, 4), |(z, y, x)| {
        z as f32 - 0.25 * y as f32 + x as f32 * 1e-3
    });
    let f_file = dir.path().join("c_0000.tif");
    write_tiff(&f_file, f.shape(), f.as_slice().unwrap()).unwrap();
    // A second channel written as raw int16 pages by the tiff crate itself.
    let i_file = dir.path().join("c_0001.tif");
    {
        let mut enc = TiffEncoder::new(File::create(&i_file).unwrap()).unwrap();
        for z in 0..2i16 {
            let page: Vec<i16> = (0..12).map(|k| -1000 * z + k).collect();
            enc.write_image::<colortype::GrayI16>(4, 3, &page).unwrap();
        }
    }
    let read = Tiff3DIO.read_images(&[&f_file, &i_file]).unwrap();
    assert_eq!(read.data.shape(), [2, 2, 3, 4]);
    assert_eq!(channel(&read.data, 0), f);
    assert_eq!(read.data[[1, 1, 2, 3]], -1000.0 + 11.0);
    assert_eq!(read.properties.spacing, [1.0, 1.0, 1.0], "no side file");

    // Shapes must agree, naming both files.
    let other = dir.path().join("c_0002.tif");
    write_tiff(&other, &[3, 3, 4], &[0u8; 36]).unwrap();
    assert_images_error(&Tiff3DIO, &[&f_file, &other], &["c_0002.tif", "c_0000.tif"]);
}

#[test]
fn single_slice_needs_3d_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let seg = Array3::from_shape_fn((1, 2, 3), |(_, y, x)| (y + x) as i16);
    let file = dir.path().join("one.tif");
    Tiff3DIO
        .write_segmentation(seg.view(), &file, &with_spacing([2.0, 1.0, 1.0]))
        .unwrap();
    let back = Tiff3DIO.read_segmentation(&file).unwrap();
    assert_eq!(back.data.shape(), [1, 1, 2, 3]);
    // A plain 2D page (no tifffile description) is refused, as nnU-Net does.
    let flat = dir.path().join("flat.tif");
    TiffEncoder::new(File::create(&flat).unwrap())
        .unwrap()
        .write_image::<colortype::Gray8>(3, 2, &[0u8; 6])
        .unwrap();
    assert_images_error(&Tiff3DIO, &[&flat], &["flat.tif", "only 3D"]);
    // An RGB stack is refused.
    let rgb = dir.path().join("rgb.tif");
    {
        let mut enc = TiffEncoder::new(File::create(&rgb).unwrap()).unwrap();
        enc.write_image::<colortype::RGB8>(2, 2, &[0u8; 12])
            .unwrap();
        enc.write_image::<colortype::RGB8>(2, 2, &[0u8; 12])
            .unwrap();
    }
    assert_images_error(&Tiff3DIO, &[&rgb], &["rgb.tif", "4D"]);
    // A single page with three samples is a 3D array for tifffile, and so for nnU-Net.
    let planes = dir.path().join("planes.tif");
    TiffEncoder::new(File::create(&planes).unwrap())
        .unwrap()
        .write_image::<colortype::RGB8>(2, 1, &[1u8, 2, 3, 4, 5, 6])
        .unwrap();
    let read = Tiff3DIO.read_images(&[&planes]).unwrap();
    assert_eq!(read.data.shape(), [1, 1, 2, 3]);
    assert_eq!(
        read.data.iter().copied().collect::<Vec<_>>(),
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
}

#[test]
fn probabilities_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = Array4::from_shape_fn((3, 2, 4, 5), |(c, z, y, x)| {
        (c as f32 + 1.0) / (z + y + x + 1) as f32
    });
    let file = dir.path().join("case_probabilities.tif");
    Tiff3DIO
        .write_probabilities(p.view(), &file, &with_spacing([1.0, 2.0, 3.0]))
        .unwrap();
    assert_eq!(read_probabilities(&file).unwrap(), p);
    assert!(dir.path().join("case_probabilities.json").is_file());
}

#[test]
fn bad_inputs_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let unreadable: [Unreadable; 2] = [
        ("missing_0000.tif", None, &["missing_0000.tif"]),
        (
            "garbage_0000.tif",
            Some(b"this is not a tiff file at all"),
            &["garbage_0000.tif"],
        ),
    ];
    assert_files_refused(&Tiff3DIO, dir.path(), &unreadable);

    let good = dir.path().join("good_0000.tif");
    let v = Array3::from_shape_fn((4, 16, 16), |(z, y, x)| ((z + y * x) % 7) as i16);
    write_label_tiff(v.view(), &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for cut in [4, 8, 20, bytes.len() / 2, bytes.len() - 10] {
        let truncated = dir.path().join(format!("trunc{cut}_0000.tif"));
        std::fs::write(&truncated, &bytes[..cut]).unwrap();
        assert_images_error(
            &Tiff3DIO,
            &[&truncated],
            &[format!("trunc{cut}_0000.tif").as_str()],
        );
    }
    // Flipped bytes anywhere never panic.
    for pos in (0..bytes.len()).step_by(7) {
        let mut b = bytes.clone();
        b[pos] ^= 0xA5;
        let corrupt = dir.path().join("corrupt_0000.tif");
        std::fs::write(&corrupt, &b).unwrap();
        let _ = Tiff3DIO.read_images(&[&corrupt]);
    }

    std::fs::write(dir.path().join("good.json"), r#"{"spacing": [1, 2]}"#).unwrap();
    assert_images_error(&Tiff3DIO, &[&good], &["good.json", "three numbers"]);
    std::fs::write(dir.path().join("good.json"), r#"{"spacing": [0, 1, 1]}"#).unwrap();
    assert_images_error(&Tiff3DIO, &[&good], &["good.json", "> 0"]);
    std::fs::write(dir.path().join("good.json"), "{not json").unwrap();
    assert_images_error(&Tiff3DIO, &[&good], &["good.json", "JSON"]);

    let frac = dir.path().join("frac.tif");
    write_tiff(&frac, &[2, 1, 2], &[0.0f32, 1.0, 0.5, 2.0]).unwrap();
    assert_error(
        Tiff3DIO.read_segmentation(&frac),
        &["frac.tif", "not an integer label"],
    );

    let neg = Array3::from_elem((2, 2, 2), -1i16);
    let neg_file = dir.path().join("neg.tif");
    assert_error(
        Tiff3DIO.write_segmentation(neg.view(), &neg_file, &with_spacing([1.0; 3])),
        &["neg.tif", "negative"],
    );
    let empty = Array3::<i16>::zeros((0, 2, 2));
    assert!(
        Tiff3DIO
            .write_segmentation(
                empty.view(),
                &dir.path().join("e.tif"),
                &with_spacing([1.0; 3])
            )
            .is_err()
    );
}
