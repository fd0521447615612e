#![no_main]
//! References and digests: any string parses or fails cleanly, and what
//! parses round-trips through its normalised and familiar forms.

use berth_image::digest::Digest;
use berth_image::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(s) {
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        assert_eq!(Reference::parse(&r.familiar()).unwrap(), r);
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
    }
});
