#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hallmark_fuzz::attestation_result(data));
