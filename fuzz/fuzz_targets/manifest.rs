//! Fuzzes manifest decoding and translation: any YAML document becomes objects or diagnostics,
//! never a panic. Run: `cargo fuzz run manifest -s none` in `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(docs) = serde_saphyr_docs(text) else { return };
    let mut store = fjord::provider::Store::default();
    for doc in docs {
        let mut out = Vec::new();
        fjord::provider::decode::decode(doc, "fuzz.yaml", &mut out);
        for d in out {
            if let fjord::provider::decode::Decoded::Object(o) = d {
                let _ = store.insert(o);
            }
        }
    }
    // The defaults (so a new option cannot break this target), with a resolver to order for
    // and class nginx served, so its annotations are read too.
    let mut options =
        fjord::translate::Options::from_config(&fjord::config::StaticConfig::default());
    options.resolvers = ["default".to_owned()].into();
    options.also_serve_classes = vec!["nginx".to_owned()];
    let _ = fjord::translate::translate(&store, &options, &fjord::translate::LastGood::default());
});

fn serde_saphyr_docs(text: &str) -> Result<Vec<serde_json::Value>, ()> {
    fjord::provider::manifests::parse_documents(text).map_err(|_| ())
}
