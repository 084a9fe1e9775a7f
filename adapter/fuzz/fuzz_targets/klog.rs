//! Fuzzes the `klog` parser: see `adapter_fuzz::check` for the properties.

#![no_main]
#![forbid(unsafe_code)]

use adapter::parse::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| adapter_fuzz::check(Format::Klog, data));
