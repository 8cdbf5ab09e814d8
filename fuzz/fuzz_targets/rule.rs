//! Fuzzes the rule parser and matcher: any input either fails to parse with an error, or parses
//! into a rule that evaluates without panicking. Run: `cargo fuzz run rule -s none` in `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match fjord::rule::parse(text) {
        Err(e) => {
            // Errors point inside the rule (or just past it).
            assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e}");
        }
        Ok(rule) => {
            let headers = http::HeaderMap::new();
            let view = fjord::rule::RequestView {
                host: "a.example.com",
                path: "/a/b",
                query: Some("x=1&y"),
                method: &http::Method::GET,
                headers: &headers,
                client_ip: "10.0.0.1".parse().unwrap(),
            };
            let _ = rule.matches(&view);
            let _ = rule.hosts();
        }
    }
});
