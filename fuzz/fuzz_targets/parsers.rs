//! Every header and value parser on arbitrary text: nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mailhook::testkit::exercise_parsers(&String::from_utf8_lossy(data), data, 1_735_689_600);
});
