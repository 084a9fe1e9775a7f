//! Fuzzes the grok pattern compiler: any pattern text compiles or is rejected with a
//! position inside it, never a panic.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| adapter_fuzz::check_pattern(data));
