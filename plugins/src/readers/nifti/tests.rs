use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use ndarray::{Array3, Array4, Axis};
use nnunet_core::io::Reader;

use super::geometry::{column_norm, itk_geometry, qform_matrix};
use super::header::{DataType, Header, header_bytes};
use super::read::load;
use super::write::write_file;
use super::*;
use crate::readers::itk::encode_value;
use crate::readers::simpleitk::SimpleItkIO;
use crate::readers::test_support::{assert_error, assert_images_error};

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

/// A temporary folder (removed when dropped) and the path `name` in it.
fn temp_file(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// A 3D header of `dims` voxels of type `dtype`, with no geometry.
fn plain_header(dims: [i64; 3], dtype: DataType) -> Header {
    Header {
        dim: [3, dims[0], dims[1], dims[2], 1, 1, 1, 1],
        datatype: dtype.code(),
        ..Header::default()
    }
}

/// A 3D header with an oblique qform (code 1) and the same transform as sform (code 1).
fn oblique_header(dims: [i64; 3], dtype: DataType) -> Header {
    let mut h = Header {
        pixdim: [1.0, 0.7, 0.8, 2.5, 1.0, 1.0, 1.0, 1.0],
        qform_code: 1,
        sform_code: 1,
        quatern: [0.1, 0.2, 0.3],
        qoffset: [-90.5, 12.25, 33.0],
        ..plain_header(dims, dtype)
    };
    let q = qform_matrix(&h);
    h.srow.copy_from_slice(&q[..3]);
    h
}

fn le_bytes_i16(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn raw_header(path: &Path) -> Header {
    load(path).unwrap().header
}

/// Header geometry equal at the file's precision (NIfTI-1 stores `f32`).
fn same_geometry(a: &Header, b: &Header) {
    let f = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
    assert_eq!(f(&a.pixdim[..4]), f(&b.pixdim[..4]));
    assert_eq!(a.qform_code, b.qform_code);
    assert_eq!(a.sform_code, b.sform_code);
    assert_eq!(f(&a.quatern), f(&b.quatern));
    assert_eq!(f(&a.qoffset), f(&b.qoffset));
    for i in 0..3 {
        assert_eq!(f(&a.srow[i]), f(&b.srow[i]));
    }
    assert_eq!(a.xyzt_units, b.xyzt_units);
    assert_eq!(a.dim[..4], b.dim[..4]);
}

#[test]
fn segmentation_round_trip_keeps_data_and_header_geometry() {
    let (dir, input) = temp_file("case.nii.gz");
    let h = oblique_header([5, 6, 7], DataType::I16);
    let labels: Vec<i16> = (0..210).map(|v| (v % 5) as i16).collect();
    write_file(&input, &h, &le_bytes_i16(&labels)).unwrap();

    for reader in [&SimpleItkIO as &dyn Reader, &NibabelIO] {
        let seg = reader.read_segmentation(&input).unwrap();
        assert_eq!(seg.data.shape(), [1, 7, 6, 5]);
        assert_eq!(seg.data.as_slice().unwrap(), &labels[..]);
        assert!(close(&seg.properties.spacing, &[2.5, 0.8, 0.7], 1e-6));
        for (out_name, big) in [("out.nii.gz", false), ("out.nii", false), ("big.nii", true)] {
            let out = dir.path().join(out_name);
            let mut data = seg.data.index_axis(Axis(0), 0).to_owned();
            if big {
                data[[0, 0, 0]] = 300;
                data[[1, 0, 0]] = -2;
            }
            reader
                .write_segmentation(data.view(), &out, &seg.properties)
                .unwrap();
            let back = reader.read_segmentation(&out).unwrap();
            assert_eq!(back.data.index_axis(Axis(0), 0), data);
            assert_eq!(back.properties.spacing, seg.properties.spacing);
            assert_eq!(back.properties.origin, seg.properties.origin);
            assert_eq!(back.properties.direction, seg.properties.direction);
            let written = raw_header(&out);
            same_geometry(&written, &h);
            let want = if big { DataType::I16 } else { DataType::U8 };
            assert_eq!(written.datatype, want.code());
            let gz = std::fs::read(&out).unwrap()[..2] == [0x1f, 0x8b];
            assert_eq!(gz, out_name.ends_with(".gz"));
        }
    }
    // uint16 when a label is >= 255 and none is negative
    let seg = SimpleItkIO.read_segmentation(&input).unwrap();
    let data = Array3::from_elem((7, 6, 5), 255i16);
    let out = dir.path().join("u16.nii.gz");
    SimpleItkIO
        .write_segmentation(data.view(), &out, &seg.properties)
        .unwrap();
    assert_eq!(raw_header(&out).datatype, DataType::U16.code());
    assert_eq!(
        SimpleItkIO.read_segmentation(&out).unwrap().data[[0, 6, 5, 4]],
        255
    );
}

#[test]
fn itk_geometry_of_oblique_qform() {
    let h = oblique_header([5, 6, 7], DataType::I16);
    let g = itk_geometry(&h, 3).unwrap();
    let q = qform_matrix(&h);
    assert!(close(&g.origin, &[90.5, -12.25, 33.0], 1e-5));
    // direction columns are the normalised matrix columns with x and y negated
    for j in 0..3 {
        let n = column_norm(&q, j);
        for (i, row) in q.iter().take(3).enumerate() {
            let flip = if i < 2 { -1.0 } else { 1.0 };
            assert!((g.direction[i * 3 + j] - flip * row[j] / n).abs() < 1e-6);
        }
    }
    assert!(close(&g.spacing, &[0.7, 0.8, 2.5], 1e-6));
}

#[test]
fn itk_chooses_between_sform_and_qform() {
    let mut h = oblique_header([2, 2, 2], DataType::U8);
    h.srow = [
        [-2.0, 0.0, 0.0, 1.0],
        [0.0, 2.0, 0.0, 2.0],
        [0.0, 0.0, 2.0, 3.0],
    ];
    // sform code 1 (scanner) wins
    assert!(close(
        &itk_geometry(&h, 3).unwrap().origin,
        &[-1.0, -2.0, 3.0],
        0.0
    ));
    // another sform code that disagrees with the qform: the qform wins
    h.sform_code = 2;
    assert!(close(
        &itk_geometry(&h, 3).unwrap().origin,
        &[90.5, -12.25, 33.0],
        1e-5
    ));
    // sform only
    h.qform_code = 0;
    let g = itk_geometry(&h, 3).unwrap();
    assert!(close(&g.origin, &[-1.0, -2.0, 3.0], 0.0));
    assert!(close(
        &g.direction,
        &[1., 0., 0., 0., -1., 0., 0., 0., 1.],
        0.0
    ));
    // a sheared sform alone cannot be used
    h.srow[0][1] = 1.0;
    assert!(itk_geometry(&h, 3).is_err());
    // neither: origin 0, identity
    h.sform_code = 0;
    let g = itk_geometry(&h, 3).unwrap();
    assert_eq!(g.origin, [0.0; 3]);
    assert_eq!(g.direction, [1., 0., 0., 0., 1., 0., 0., 0., 1.]);
    // metres are converted to millimetres
    h.qform_code = 1;
    h.xyzt_units = 1;
    let g = itk_geometry(&h, 3).unwrap();
    assert!(close(&g.spacing, &[700.0, 800.0, 2500.0], 1e-3));
    assert!(close(&g.origin, &[90500.0, -12250.0, 33000.0], 1e-2));
}

#[test]
fn scaling_is_applied_unless_slope_is_zero() {
    let (_dir, path) = temp_file("scaled.nii.gz");
    let mut h = oblique_header([2, 2, 1], DataType::I16);
    h.scl_slope = 2.0;
    h.scl_inter = 10.0;
    let mut bytes = header_bytes(&h);
    bytes.extend(le_bytes_i16(&[0, 1, -3, 7]));
    let enc = |b: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(&path, enc(&bytes)).unwrap();
    let img = SimpleItkIO.read_images(&[&path]).unwrap();
    assert_eq!(img.data.as_slice().unwrap(), &[10.0, 12.0, 4.0, 24.0]);
    let seg = NibabelIO.read_segmentation(&path).unwrap();
    assert_eq!(seg.data.as_slice().unwrap(), &[10, 12, 4, 24]);

    // slope 0: no scaling at all (NIfTI standard)
    bytes[112..116].copy_from_slice(&0f32.to_le_bytes());
    std::fs::write(&path, enc(&bytes)).unwrap();
    let img = NibabelIO.read_images(&[&path]).unwrap();
    assert_eq!(img.data.as_slice().unwrap(), &[0.0, 1.0, -3.0, 7.0]);

    // a scaled label map with fractional values is an error naming the file
    bytes[112..116].copy_from_slice(&0.5f32.to_le_bytes());
    std::fs::write(&path, enc(&bytes)).unwrap();
    assert_error(
        SimpleItkIO.read_segmentation(&path),
        &["scaled.nii.gz", "not an integer"],
    );
}

#[test]
fn all_data_types_and_big_endian() {
    let (_dir, path) = temp_file("t.nii");
    let values = [0.0f64, 1.0, 2.0, 100.0];
    let types = [
        DataType::U8,
        DataType::I8,
        DataType::U16,
        DataType::I32,
        DataType::U32,
        DataType::I64,
        DataType::U64,
        DataType::F32,
        DataType::F64,
    ];
    let cases = types.map(|dtype| {
        // big-endian voxel values
        let mut data = Vec::new();
        for &v in &values {
            encode_value(dtype, v, true, &mut data);
        }
        (dtype, data)
    });
    for (dtype, data) in cases {
        let h = plain_header([4, 1, 1], dtype);
        // big-endian header: swap every multi-byte field by re-encoding by hand
        let mut bytes = header_bytes(&h);
        let le = bytes.clone();
        let swap = |b: &mut Vec<u8>, off: usize, n: usize| b[off..off + n].reverse();
        swap(&mut bytes, 0, 4);
        for i in 0..8 {
            swap(&mut bytes, 40 + 2 * i, 2);
            swap(&mut bytes, 76 + 4 * i, 4);
        }
        for off in [70, 72] {
            swap(&mut bytes, off, 2);
        }
        for off in [108, 112, 116] {
            swap(&mut bytes, off, 4);
        }
        bytes.extend(&data);
        std::fs::write(&path, &bytes).unwrap();
        let parsed = raw_header(&path);
        assert!(parsed.big_endian);
        assert_eq!(parsed.dim, h.dim);
        let _ = le;
        let img = NibabelIO.read_images(&[&path]).unwrap();
        let got: Vec<f64> = img.data.iter().map(|&v| v as f64).collect();
        assert_eq!(got, values, "{dtype:?}");
    }
}

#[test]
fn two_d_images_follow_simpleitkio() {
    let (dir, path) = temp_file("slice.nii.gz");
    let h = Header {
        dim: [2, 3, 2, 1, 1, 1, 1, 1],
        datatype: DataType::I16.code(),
        pixdim: [1.0, 0.5, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        qform_code: 1,
        qoffset: [3.0, 4.0, 0.0],
        ..Header::default()
    };
    write_file(&path, &h, &le_bytes_i16(&[1, 2, 3, 4, 5, 6])).unwrap();
    let img = SimpleItkIO.read_images(&[&path]).unwrap();
    assert_eq!(img.data.shape(), [1, 1, 2, 3]);
    assert_eq!(img.data[[0, 0, 1, 0]], 4.0);
    assert_eq!(img.properties.spacing, [1998.0, 2.0, 0.5]);
    assert_eq!(img.properties.origin, [-3.0, -4.0]);
    assert_eq!(img.properties.direction, [-1.0, 0.0, 0.0, -1.0]);
    assert_images_error(&NibabelIO, &[&path], &["only 3d images"]);

    let out = dir.path().join("pred.nii.gz");
    let seg = Array3::from_shape_fn((1, 2, 3), |(_, y, x)| (y * 3 + x) as i16);
    SimpleItkIO
        .write_segmentation(seg.view(), &out, &img.properties)
        .unwrap();
    let written = raw_header(&out);
    assert_eq!(written.dim[0], 2);
    same_geometry(&written, &h);
    let back = SimpleItkIO.read_segmentation(&out).unwrap();
    assert_eq!(back.data.index_axis(Axis(0), 0), seg);
    assert_eq!(
        back.properties,
        SimpleItkIO.read_segmentation(&out).unwrap().properties
    );
    assert_eq!(back.properties.spacing, [1998.0, 2.0, 0.5]);
}

#[test]
fn four_d_files_give_channels_and_probabilities_round_trip() {
    let (dir, path) = temp_file("multi.nii.gz");
    let mut h = oblique_header([3, 2, 2], DataType::I16);
    h.dim = [4, 3, 2, 2, 2, 1, 1, 1];
    let values: Vec<i16> = (0..24).collect();
    write_file(&path, &h, &le_bytes_i16(&values)).unwrap();
    let img = SimpleItkIO.read_images(&[&path]).unwrap();
    assert_eq!(img.data.shape(), [2, 2, 2, 3]);
    assert_eq!(img.data[[1, 0, 0, 0]], 12.0);
    assert!(close(&img.properties.spacing, &[2.5, 0.8, 0.7], 1e-6));
    assert_eq!(img.properties.origin.len(), 4);
    assert_eq!(img.properties.direction.len(), 16);
    assert!(SimpleItkIO.read_segmentation(&path).is_err());
    assert!(NibabelIO.read_images(&[&path]).is_err());

    // a 4D file with a single volume is 3D for ITK
    let single = dir.path().join("single.nii.gz");
    h.dim = [4, 3, 2, 2, 1, 1, 1, 1];
    write_file(&single, &h, &le_bytes_i16(&values[..12])).unwrap();
    let img1 = SimpleItkIO.read_images(&[&single]).unwrap();
    assert_eq!(img1.data.shape(), [1, 2, 2, 3]);
    assert_eq!(img1.properties.origin.len(), 3);

    let probs = Array4::from_shape_fn((3, 2, 2, 3), |(c, z, y, x)| {
        (c * 100 + z * 10 + y * 3 + x) as f32 / 7.0
    });
    let out = dir.path().join("probs.nii.gz");
    SimpleItkIO
        .write_probabilities(probs.view(), &out, &img1.properties)
        .unwrap();
    let back = SimpleItkIO.read_images(&[&out]).unwrap();
    assert_eq!(back.data, probs);
    assert_eq!(raw_header(&out).datatype, DataType::F32.code());
    assert_eq!(back.properties.origin[..3], img1.properties.origin[..]);
    // the 4th axis holds classes, not time: its unit is dropped
    same_geometry(
        &Header {
            dim: h.dim,
            ..raw_header(&out)
        },
        &Header {
            xyzt_units: h.xyzt_units & 7,
            ..h
        },
    );
}

#[test]
fn channels_must_agree() {
    let (dir, a) = temp_file("case_0000.nii.gz");
    let b = dir.path().join("case_0001.nii.gz");
    let c = dir.path().join("case_0002.nii.gz");
    let h = oblique_header([2, 2, 2], DataType::U8);
    write_file(&a, &h, &[1u8; 8]).unwrap();
    write_file(&b, &h, &[2u8; 8]).unwrap();
    let img = SimpleItkIO.read_images(&[&a, &b]).unwrap();
    assert_eq!(img.data.shape(), [2, 2, 2, 2]);
    assert_eq!(img.data[[1, 1, 1, 1]], 2.0);
    let img = NibabelIO.read_images(&[&a, &b]).unwrap();
    assert_eq!(img.data[[0, 1, 1, 1]], 1.0);

    let mut other = h.clone();
    other.dim = [3, 2, 2, 1, 1, 1, 1, 1];
    write_file(&c, &other, &[3u8; 4]).unwrap();
    for reader in [&SimpleItkIO as &dyn Reader, &NibabelIO] {
        let err = assert_images_error(reader, &[&a, &c], &["case_0000.nii.gz", "case_0002.nii.gz"]);
        assert!(err.contains("shape"), "{err}");
    }
    let mut other = h.clone();
    other.pixdim[2] = 0.9;
    write_file(&c, &other, &[3u8; 8]).unwrap();
    for reader in [&SimpleItkIO as &dyn Reader, &NibabelIO] {
        assert_images_error(reader, &[&a, &c], &["spacing", "case_0000.nii.gz"]);
    }
    // a different origin is only a warning
    let mut other = h.clone();
    other.srow[0][3] += 5.0;
    other.qoffset[0] += 5.0;
    write_file(&c, &other, &[3u8; 8]).unwrap();
    assert!(SimpleItkIO.read_images(&[&a, &c]).is_ok());
    assert!(NibabelIO.read_images(&[&a, &c]).is_ok());
}

#[test]
fn nifti2_is_read_by_nibabelio_only() {
    let (dir, path) = temp_file("v2.nii.gz");
    let mut h = oblique_header([2, 3, 1], DataType::F64);
    h.version = 2;
    let data: Vec<u8> = (0..6)
        .flat_map(|v| (v as f64 * 1.5).to_le_bytes())
        .collect();
    write_file(&path, &h, &data).unwrap();
    assert_eq!(raw_header(&path).srow, h.srow);
    let img = NibabelIO.read_images(&[&path]).unwrap();
    assert_eq!(
        img.data.as_slice().unwrap(),
        &[0.0, 1.5, 3.0, 4.5, 6.0, 7.5]
    );
    assert_images_error(&SimpleItkIO, &[&path], &["NIfTI-2"]);
    assert!(!SimpleItkIO.can_read(&path));
    assert!(NibabelIO.can_read(&path));
    // written back as NIfTI-2
    let out = dir.path().join("out.nii.gz");
    NibabelIO
        .write_segmentation(
            Array3::<i16>::zeros((1, 3, 2)).view(),
            &out,
            &img.properties,
        )
        .unwrap();
    let back = raw_header(&out);
    assert_eq!(back.version, 2);
    same_geometry(&back, &h);
}

#[test]
fn properties_without_nifti_header_are_written_from_spacing_origin_direction() {
    let (dir, path) = temp_file("in.nii.gz");
    let h = oblique_header([3, 2, 2], DataType::U8);
    write_file(&path, &h, &[0u8; 12]).unwrap();
    let mut props = SimpleItkIO.read_segmentation(&path).unwrap().properties;
    props.extra.clear();
    let out = dir.path().join("out.nii.gz");
    SimpleItkIO
        .write_segmentation(Array3::<i16>::ones((2, 2, 3)).view(), &out, &props)
        .unwrap();
    let back = SimpleItkIO.read_segmentation(&out).unwrap().properties;
    assert!(close(&back.spacing, &props.spacing, 1e-6));
    assert!(close(&back.origin, &props.origin, 1e-4));
    assert!(close(&back.direction, &props.direction, 1e-6));
}

/// A valid 4×4×4 `int16` file, gzip-compressed and plain: the bytes each holds.
fn good_file_bytes(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let good = dir.join("good.nii.gz");
    let h = oblique_header([4, 4, 4], DataType::I16);
    write_file(&good, &h, &le_bytes_i16(&[7; 64])).unwrap();
    let gz = std::fs::read(&good).unwrap();
    let mut plain = header_bytes(&h);
    plain.extend(le_bytes_i16(&[7; 64]));
    (gz, plain)
}

/// `bytes` with `value` written at `offset`.
fn patched(bytes: &[u8], offset: usize, value: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[offset..offset + value.len()].copy_from_slice(value);
    out
}

/// Writes `bytes` (if any) as `dir/name` and checks that both readers refuse it with an error
/// naming the file and containing `want`.
fn assert_unreadable(dir: &Path, name: &str, bytes: Option<&[u8]>, want: &str) {
    let path = dir.join(name);
    if let Some(b) = bytes {
        std::fs::write(&path, b).unwrap();
    }
    for reader in [&SimpleItkIO as &dyn Reader, &NibabelIO] {
        let err = reader.read_images(&[&path]).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(reader.read_segmentation(&path).is_err());
    }
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (gz, plain) = good_file_bytes(dir.path());
    let check = |name: &str, bytes: Option<&[u8]>, want: &str| {
        assert_unreadable(dir.path(), name, bytes, want)
    };
    check("missing.nii.gz", None, "No such file");
    check("empty.nii.gz", Some(&[]), "too short");
    check("truncated.nii.gz", Some(&gz[..gz.len() / 2]), "");
    check(
        "truncated.nii",
        Some(&plain[..plain.len() - 3]),
        "truncated",
    );
    check(
        "short_header.nii",
        Some(&plain[..200]),
        "truncated NIfTI header",
    );
    let mut corrupt = gz.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid - 8..mid + 8] {
        *b ^= 0x5a;
    }
    check("corrupt.nii.gz", Some(&corrupt), "");
    check(
        "text.nii.gz",
        Some(b"this is not an image at all"),
        "not a NIfTI file",
    );
    assert!(SimpleItkIO.read_images(&[]).is_err());
}

#[test]
fn bad_header_fields_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, plain) = good_file_bytes(dir.path());
    let check = |name: &str, bytes: &[u8], want: &str| {
        assert_unreadable(dir.path(), name, Some(bytes), want)
    };
    check("magic.nii", &patched(&plain, 344, b"abcd"), "magic");
    let zero = patched(&plain, 42, &0i16.to_le_bytes());
    check("zero_dim.nii", &zero, "invalid size 0");
    let negative = patched(&plain, 44, &(-3i16).to_le_bytes());
    check("negative_dim.nii", &negative, "invalid size -3");
    let mut huge = plain.clone();
    for i in 1..4 {
        huge[40 + 2 * i..42 + 2 * i].copy_from_slice(&i16::MAX.to_le_bytes());
    }
    check("huge.nii", &huge, "more than the file holds");
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(&huge).unwrap();
    check("huge.nii.gz", &e.finish().unwrap(), "truncated");
    let complex = patched(&plain, 70, &32i16.to_le_bytes());
    check("complex.nii", &complex, "complex");
    check(
        "dim0.nii",
        &patched(&plain, 40, &9i16.to_le_bytes()),
        "dim[0] = 9",
    );
    let offset = patched(&plain, 108, &0f32.to_le_bytes());
    check("offset.nii", &offset, "offset");
}

#[test]
fn labels_outside_int16_are_errors_naming_the_file() {
    let (_dir, big) = temp_file("big_labels.nii");
    let h = plain_header([2, 1, 1], DataType::I32);
    let data: Vec<u8> = [1i32, 40000].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(&big, &h, &data).unwrap();
    assert_error(
        NibabelIO.read_segmentation(&big),
        &["big_labels.nii", "40000"],
    );
}

#[test]
fn endings_and_registration() {
    assert_eq!(
        SimpleItkIO.file_endings()[..4],
        [".nii.gz", ".nrrd", ".mha", ".gipl"]
    );
    assert_eq!(NibabelIO.file_endings(), [".nii", ".nii.gz"]);
    let registries = nnunet_core::registry::Registries::builtin().unwrap();
    for name in [
        "SimpleITKIO",
        "SimpleITKIOWithReorient",
        "NibabelIO",
        "NibabelIOWithReorient",
    ] {
        assert!(registries.readers.contains(name), "{name}");
    }
}
