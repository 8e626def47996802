//! Session tokens and timeline cursors from untrusted clients: decoding
//! never panics, and whatever decodes re-encodes to the same text (so a
//! token cannot be accepted in two spellings).
#![no_main]

use kuai_store::{Cursor, TokenSigner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(signer) = TokenSigner::new(b"fuzzing key, at least 16 bytes") {
        if let Ok(session) = signer.decode(text) {
            assert_eq!(signer.encode(&session), text);
            assert!(session.last_seen() >= session.last_write());
        }
    }
    if let Ok(cursor) = Cursor::decode(text) {
        assert_eq!(cursor.encode(), text.to_ascii_lowercase());
    }
});
