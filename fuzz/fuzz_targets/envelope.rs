//! Any bytes a consumer might read off a topic: decoded into an envelope or
//! refused with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use touchpoint_platform::envelope::{decode, event_type, instant};

fuzz_target!(|data: &[u8]| {
    if let Ok((envelope, _id)) = decode(Some(data)) {
        let _ = event_type(&envelope);
        if let Some(at) = envelope.occurred_at.as_ref() {
            let _ = instant(at);
        }
    }
});
