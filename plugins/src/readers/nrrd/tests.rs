use std::io::Write;
use std::path::PathBuf;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::*;
use crate::readers::test_support::assert_read_errors;

fn write(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(data);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn ras_space_directions_become_lps() {
    let dir = tempfile::tempdir().unwrap();
    let header = "NRRD0004\ntype: uint8\ndimension: 3\nspace: right-anterior-superior\n\
        sizes: 2 1 1\nspace directions: (0.5,0,0) (0,0.7,0.1) (0,0,2)\nendian: little\n\
        encoding: raw\nspace origin: (1, 2, 3)\n\n";
    let path = write(dir.path(), "ras.nrrd", header, &[7, 8]);
    let (img, extra) = read_itk(&path).unwrap();
    assert_eq!(img.size, [2, 1, 1]);
    assert_eq!(img.geometry.origin, [-1.0, -2.0, 3.0]);
    let s = 0.7f64.hypot(0.1);
    assert!((img.geometry.spacing[1] - s).abs() < 1e-15);
    assert_eq!(img.geometry.direction[0], -1.0);
    assert!((img.geometry.direction[4] + 0.7 / s).abs() < 1e-15);
    assert_eq!(extra["nrrd"]["space"], "right-anterior-superior");
    // written back in RAS, read back the same
    for name in ["out.nrrd", "out.nhdr"] {
        let out = dir.path().join(name);
        write_itk(&out, &img, &extra).unwrap();
        let text = String::from_utf8_lossy(&std::fs::read(&out).unwrap()).into_owned();
        assert!(text.contains("space: right-anterior-superior"), "{text}");
        let (back, _) = read_itk(&out).unwrap();
        assert_eq!(back.geometry, img.geometry);
        assert_eq!(back.pixels.bytes, [7, 8]);
    }
    assert!(dir.path().join("out.raw.gz").is_file());
}

#[test]
fn components_axis_anywhere_and_axis_geometry() {
    let dir = tempfile::tempdir().unwrap();
    // 2 components on the last axis of a 2x1 image: values (x0: 1, 2), (x1: 3, 4)
    let header = "NRRD0005\n# comment\nkey:=value\ntype: short\ndimension: 3\nsizes: 2 1 2\n\
        kinds: domain domain vector\nspacings: 0.5 NaN nan\naxis mins: 5 6 0\nendian: big\n\
        encoding: text\n\n";
    let path = write(dir.path(), "vec.nrrd", header, b"1 3\n2 4\n");
    let (img, _) = read_itk(&path).unwrap();
    assert_eq!((img.size.clone(), img.components), (vec![2, 1], 2));
    assert_eq!(img.pixels.decode(|v| v), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(img.geometry.spacing, [0.5, 1.0]);
    assert_eq!(img.geometry.origin, [5.25, 6.5]);
}

#[test]
fn detached_gzip_big_endian_with_skips() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&[0xff, 0, 1, 0, 2]).unwrap();
    std::fs::write(dir.path().join("d.raw.gz"), gz.finish().unwrap()).unwrap();
    let header = "NRRD0004\ntype: ushort\ndimension: 2\nsizes: 2 1\nendian: big\n\
        encoding: gzip\nbyte skip: 1\ndata file: d.raw.gz\n";
    let path = write(dir.path(), "d.nhdr", header, b"");
    let (img, _) = read_itk(&path).unwrap();
    assert_eq!(img.pixels.decode(|v| v), [1.0, 2.0]);
    std::fs::write(dir.path().join("r.raw"), b"skip me\n\x01\x02").unwrap();
    let header = "NRRD0004\ntype: uchar\ndimension: 1\nsizes: 2\nencoding: raw\nline skip: 1\ndata file: r.raw\n";
    let path = write(dir.path(), "r.nhdr", header, b"");
    assert_eq!(read_itk(&path).unwrap().0.pixels.bytes, [1, 2]);
}

#[test]
fn bad_headers_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 10] = [
        ("magic.nrrd", b"P5 2 2\n", "magic"),
        ("nosizes.nrrd", b"NRRD0004\ntype: uchar\ndimension: 2\nencoding: raw\n\n", "sizes"),
        ("dim.nrrd", b"NRRD0004\ntype: uchar\ndimension: 2\nsizes: 2\nencoding: raw\n\n", "one per axis"),
        ("type.nrrd", b"NRRD0004\ntype: block\ndimension: 1\nsizes: 2\nencoding: raw\n\n", "block"),
        ("bz.nrrd", b"NRRD0004\ntype: uchar\ndimension: 1\nsizes: 2\nencoding: bzip2\n\n", "bzip2"),
        ("trunc.nrrd", b"NRRD0004\ntype: uchar\ndimension: 1\nsizes: 4\nencoding: raw\n\nab", "truncated"),
        ("huge.nrrd", b"NRRD0004\ntype: double\ndimension: 3\nsizes: 100000 100000 100000\nencoding: gzip\n\n", ""),
        ("space.nrrd", b"NRRD0004\ntype: uchar\ndimension: 2\nsizes: 2 2\nspace: right-anterior-superior\nspace directions: (1,0,0) (0,1,0)\nencoding: raw\n\n\0\0\0\0", "dimension of its space"),
        ("vec.nrrd", b"NRRD0004\ntype: uchar\ndimension: 1\nsizes: 2\nspace dimension: 1\nspace directions: (1,0\nencoding: raw\n\n\0\0", "vector"),
        ("nodata.nhdr", b"NRRD0004\ntype: uchar\ndimension: 1\nsizes: 2\nencoding: raw\n", "data file"),
    ];
    assert_read_errors(dir.path(), read_itk, &cases);
}
