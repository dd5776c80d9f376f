#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| terrace::fuzzing::module_archive(data));
