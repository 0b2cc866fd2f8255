#![no_main]

use std::sync::OnceLock;

use tandem_fuzz::SqlTarget;

// One database for the whole run: opening one per input would leave little time for the SQL.
static TARGET: OnceLock<SqlTarget> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = TARGET.get_or_init(SqlTarget::new).run(data);
});
