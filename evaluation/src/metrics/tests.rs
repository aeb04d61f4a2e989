use super::*;

#[test]
fn keys_are_python_str() {
    assert_eq!(LabelOrRegion::Label(3).key(), "3");
    assert_eq!(LabelOrRegion::Region(vec![3]).key(), "(3,)");
    assert_eq!(LabelOrRegion::Region(vec![1, 2, 3]).key(), "(1, 2, 3)");
    for key in ["3", "(3,)", "(1, 2, 3)", "-1"] {
        assert_eq!(LabelOrRegion::from_key(key).unwrap().key(), key);
    }
    assert_eq!(LabelOrRegion::from_key("(a, 1)"), None);
}

#[test]
fn pairwise_sum_blocks() {
    // 1e16 + 1 + 1 + ... loses the ones summed one by one but not pairwise in blocks of 8.
    let mut v = vec![1.0; 200];
    v[0] = 1e16;
    let sequential: f64 = v.iter().sum();
    assert_eq!(sequential, 1e16);
    assert!(numpy_sum(&v) > 1e16);
}
