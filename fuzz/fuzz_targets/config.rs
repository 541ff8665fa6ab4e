//! The configuration parser: any text. Errors carry a line within the text; nothing panics.
#![no_main]

use keyward_daemon::config::file;
use keyward_daemon::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut config = Config::new("data".into(), "v.sock".into(), "a.sock".into());
    if let Err((line, reason)) = file::parse(text, &mut config) {
        assert!(line <= text.lines().count() + 1, "line {line} beyond the text: {reason}");
        assert!(!reason.is_empty());
    }
});
