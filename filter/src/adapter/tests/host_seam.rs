//! What the adapter reads from and builds for the host: the serialized header buffer, generated
//! ids, and the replies built once per configure.

use crate::adapter::host::{Headers, Ids};
use crate::contract::reason::Reason;
use crate::fixtures;

#[test]
fn the_host_header_buffer_is_parsed_in_place_and_bad_buffers_are_refused() {
    // The proxy-wasm serialized map: count, (name len, value len)*, then name\0value\0 each.
    let mut buf = Vec::new();
    let pairs: [(&[u8], &[u8]); 3] = [
        (b":path", b"/a"),
        (b"authorization", b"Bearer \xff"),
        (b"x", b""),
    ];
    buf.extend_from_slice(&3u32.to_le_bytes());
    for (k, v) in pairs {
        buf.extend_from_slice(&u32::try_from(k.len()).unwrap().to_le_bytes());
        buf.extend_from_slice(&u32::try_from(v.len()).unwrap().to_le_bytes());
    }
    for (k, v) in pairs {
        buf.extend_from_slice(k);
        buf.push(0);
        buf.extend_from_slice(v);
        buf.push(0);
    }
    let h = Headers::parse(buf.clone()).unwrap();
    let p = h.pairs();
    assert_eq!(p.len(), 3);
    assert_eq!((p[0].0, p[0].1.as_ref()), (":path", "/a"));
    // A value that is not UTF-8 is read lossily: the scheme survives, the token cannot.
    assert_eq!(p[1].1.as_ref(), "Bearer \u{fffd}");
    assert_eq!((p[2].0, p[2].1.as_ref()), ("x", ""));
    for cut in [1, 5, 20, buf.len() - 1] {
        assert!(
            Headers::parse(buf[..cut].to_vec()).is_none(),
            "cut at {cut}"
        );
    }
    let mut huge = u32::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(&[0; 8]);
    assert!(Headers::parse(huge).is_none());
    assert_eq!(Headers::parse(Vec::new()).unwrap().len(), 0);
}

#[test]
fn generated_ids_are_hex_of_the_asked_length_and_differ() {
    let ids = Ids::new(1);
    let a = ids.hex(32);
    let b = ids.hex(32);
    assert_eq!(a.len(), 32);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(a, b);
    assert_eq!(ids.hex(16).len(), 16);
}

#[test]
fn replies_built_once_are_the_contract_replies() {
    let cfg = crate::config::Config::from_json(
        fixtures::config_json().to_string().as_bytes(),
        &fixtures::env,
    )
    .unwrap();
    let r = crate::adapter::replies::Replies::new(&cfg);
    for reason in Reason::ALL {
        assert_eq!(
            r.body(reason, "rid\"1"),
            crate::contract::reason::body(reason, "rid\"1")
        );
        assert_eq!(
            r.challenge(reason, None),
            crate::contract::reason::www_authenticate(reason, "")
        );
    }
    assert_eq!(
        r.challenge(Reason::InsufficientScope, Some(1)),
        crate::contract::reason::www_authenticate(Reason::InsufficientScope, "internal:admin")
    );
    assert_eq!(r.grpc_body(Reason::TokenMissing), "token_missing: no token");
}
