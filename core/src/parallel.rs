//! Parallel work over a list that fails the same way every run.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::error::Result;

/// `f` of every item, computed in parallel on the current rayon pool and returned in order. On
/// failure, the error of the first failing item in list order rather than the first to fail in
/// time, so that a run names the same problem every time; items after a known failure are
/// skipped.
pub fn try_map_ordered<T, U, F>(items: &[T], f: F) -> Result<Vec<U>>
where
    T: Sync,
    U: Send,
    F: Fn(&T) -> Result<U> + Sync,
{
    let first_failure = AtomicUsize::new(usize::MAX);
    let results: Vec<Option<Result<U>>> = items
        .par_iter()
        .enumerate()
        .map(|(i, item)| {
            if i > first_failure.load(Ordering::Relaxed) {
                return None;
            }
            let result = f(item);
            if result.is_err() {
                first_failure.fetch_min(i, Ordering::Relaxed);
            }
            Some(result)
        })
        .collect();
    // Every skipped item comes after a failure, so the first error in order was computed.
    results.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn results_keep_the_order_of_the_items() {
        let items: Vec<u32> = (0..1000).collect();
        let squares = try_map_ordered(&items, |&x| Ok(x * x)).unwrap();
        assert_eq!(squares, items.iter().map(|x| x * x).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_failing_item_in_order_is_reported() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let items: Vec<usize> = (0..64).collect();
        for _ in 0..20 {
            // Later items fail at once, item 5 only after a while: item 5 is still the one named.
            let err = pool
                .install(|| {
                    try_map_ordered(&items, |&i| {
                        if i == 5 {
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        match i {
                            5 | 40.. => Err(Error::dataset(format!("item {i}"))),
                            _ => Ok(i),
                        }
                    })
                })
                .unwrap_err();
            assert_eq!(err.to_string(), Error::dataset("item 5").to_string());
        }
    }
}
