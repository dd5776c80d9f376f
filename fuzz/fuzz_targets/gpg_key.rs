#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| terrace::fuzzing::gpg_key(data));
