//! Config parsing and validation on arbitrary YAML: an error, never a panic.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let env: HashMap<String, String> = [("KEY".to_owned(), "sk-1".to_owned()), ("PORT".to_owned(), "3000".to_owned())].into();
    if let Ok(config) = mcp_middleware::config::load_str(&text, &env) {
        let _ = mcp_middleware::config::Redactor::for_config(&config);
    }
});
