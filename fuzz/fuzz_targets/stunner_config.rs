//! Whatever a STUNner config file, ConfigMap or config discovery message holds: parsing never
//! panics, and every listener of a config that parses yields a well-formed URI or none.
#![no_main]

use ice_config::stunner_config::parse_document;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(configs) = parse_document(text) else {
        return;
    };
    for config in configs {
        let _ = config.gateway_ref();
        for listener in &config.listeners {
            let _ = listener.path();
            if let Some(uri) = listener.turn_uri(None) {
                assert!(
                    uri.starts_with("turn:") || uri.starts_with("turns:"),
                    "{uri}"
                );
                assert!(!uri.contains(char::is_whitespace), "{uri:?}");
            }
        }
    }
});
