//! Parity with numpy, scipy and Python, bit for bit where nnU-Net's files or numbers are compared:
//! numpy's legacy random generator ([`numpy_random`]), numpy's float32 reductions and percentiles
//! ([`statistics`]), and JSON as Python writes and reads it ([`json`]). This code is written by
//! hand because the crates that do the same work round, order or spell differently.

pub mod json;
pub mod numpy_random;
pub mod statistics;
