#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tandem_fuzz::cluster_request(data);
});
