//! Registrar rules (RFC 3261 §10.3) with exact requests and virtual time.

use super::*;
use crate::transport::Transport;

const T0: u64 = 1_764_158_400_000;

fn peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5070".parse().unwrap(),
    }
}

fn req<'a>(
    call_id: &'a [u8],
    cseq: u32,
    expires: Option<u32>,
    contacts: &'a [&'a [u8]],
) -> RegisterRequest<'a> {
    RegisterRequest {
        to_uri: b"sip:bob@example.com",
        call_id,
        cseq,
        expires,
        contacts,
        source: peer(),
    }
}

const AOR: &[u8] = b"sip:bob@example.com";

fn uris(list: &[Binding]) -> Vec<&[u8]> {
    list.iter().map(|b| &*b.uri).collect()
}

fn events(r: &mut Registrar) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

#[test]
fn the_aor_is_the_canonical_to_uri() {
    assert_eq!(
        canonical_aor(b"sip:bob@Example.COM:5060;transport=tcp").unwrap(),
        AOR
    );
    assert_eq!(canonical_aor(b"sips:bob@example.com").unwrap(), AOR);
    assert_eq!(canonical_aor(b"sip:b%6Fb@example.com").unwrap(), AOR);
    // Escapes come out in one form, and nothing that could break a header gets through.
    assert_eq!(
        canonical_aor(b"sip:john%20doe@example.com").unwrap(),
        b"sip:john%20doe@example.com"
    );
    assert_eq!(
        canonical_aor(b"sip:a%0d%0aVia%3ax@example.com").unwrap(),
        b"sip:a%0D%0AVia%3Ax@example.com"
    );
    assert!(matches!(
        canonical_aor(b"sip:example.com"),
        Err(RegisterError::BadRequest(_))
    ));
    assert!(matches!(
        canonical_aor(b"tel:+1555"),
        Err(RegisterError::BadRequest(_))
    ));
}

#[test]
fn a_binding_is_added_refreshed_and_removed() {
    let mut r = Registrar::new();
    let c: &[&[u8]] = &[b"<sip:bob@10.0.0.1:5070>;+g.oma.sip-im"];
    let list = r.register(T0, AOR, &req(b"c1", 1, Some(600), c)).unwrap();
    assert_eq!(uris(&list), vec![&b"sip:bob@10.0.0.1:5070"[..]]);
    assert_eq!(list[0].remaining_secs(T0), 600);
    assert!(list[0].im && !list[0].large_message);
    assert_eq!(list[0].source, peer());
    assert_eq!(events(&mut r), vec![Event::Reachable { aor: AOR.into() }]);
    // Refresh: same contact (equivalent URI), new CSeq; still one binding, new expiry.
    let c2: &[&[u8]] = &[b"<sip:bob@10.0.0.1:5070>;expires=1200"];
    let list = r
        .register(T0 + 1000, AOR, &req(b"c1", 2, Some(600), c2))
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].remaining_secs(T0 + 1000), 1200);
    assert_eq!(r.len(), 1);
    // Removal with Expires: 0.
    let list = r
        .register(T0 + 2000, AOR, &req(b"c1", 3, Some(0), c))
        .unwrap();
    assert!(list.is_empty());
    assert_eq!(r.len(), 0);
    let ev = events(&mut r);
    assert_eq!(ev.last(), Some(&Event::Unreachable { aor: AOR.into() }));
}

#[test]
fn several_contacts_are_listed_by_q_and_a_query_changes_nothing() {
    let mut r = Registrar::new();
    let c: &[&[u8]] = &[
        b"<sip:bob@10.0.0.1>;q=0.1, <sip:bob@10.0.0.2>;q=0.9",
        b"sip:bob@10.0.0.3",
    ];
    let list = r.register(T0, AOR, &req(b"c1", 1, None, c)).unwrap();
    assert_eq!(
        uris(&list),
        vec![
            &b"sip:bob@10.0.0.3"[..],
            b"sip:bob@10.0.0.2",
            b"sip:bob@10.0.0.1"
        ]
    );
    assert_eq!(
        list[0].remaining_secs(T0),
        u64::from(REGISTRAR_EXPIRES_DEFAULT_SECS)
    );
    events(&mut r);
    let queried = r
        .register(T0 + 5, AOR, &req(b"other", 1, None, &[]))
        .unwrap();
    assert_eq!(queried, list);
    assert!(events(&mut r).is_empty());
}

#[test]
fn too_brief_is_423_and_too_long_is_shortened() {
    let mut r = Registrar::new();
    let c: &[&[u8]] = &[b"<sip:bob@10.0.0.1>;expires=30"];
    assert_eq!(
        r.register(T0, AOR, &req(b"c1", 1, None, c)),
        Err(RegisterError::IntervalTooBrief {
            min_secs: REGISTRAR_EXPIRES_MIN_SECS
        })
    );
    // The header counts when the contact says nothing.
    let c: &[&[u8]] = &[b"<sip:bob@10.0.0.1>"];
    assert!(matches!(
        r.register(T0, AOR, &req(b"c1", 1, Some(1), c)),
        Err(RegisterError::IntervalTooBrief { .. })
    ));
    let list = r
        .register(T0, AOR, &req(b"c1", 2, Some(10_000_000), c))
        .unwrap();
    assert_eq!(
        list[0].remaining_secs(T0),
        u64::from(REGISTRAR_EXPIRES_MAX_SECS)
    );
}

#[test]
fn a_request_fails_whole_when_one_contact_fails() {
    let mut r = Registrar::new();
    let c: &[&[u8]] = &[b"<sip:bob@10.0.0.1>, <sip:bob@10.0.0.2>;expires=5"];
    assert!(r.register(T0, AOR, &req(b"c1", 1, None, c)).is_err());
    assert_eq!(r.len(), 0);
    assert_eq!(r.lookup(T0, AOR).count(), 0);
}

#[test]
fn star_removes_everything_only_alone_and_with_expires_zero() {
    let mut r = Registrar::new();
    let c: &[&[u8]] = &[b"<sip:bob@10.0.0.1>, <sip:bob@10.0.0.2>"];
    r.register(T0, AOR, &req(b"c1", 1, None, c)).unwrap();
    let star: &[&[u8]] = &[b"*"];
    assert!(matches!(
        r.register(T0, AOR, &req(b"c2", 1, Some(60), star)),
        Err(RegisterError::BadRequest(_))
    ));
    assert!(matches!(
        r.register(T0, AOR, &req(b"c2", 1, None, star)),
        Err(RegisterError::BadRequest(_))
    ));
    let with_other: &[&[u8]] = &[b"*", b"<sip:bob@10.0.0.3>"];
    assert!(r
        .register(T0, AOR, &req(b"c2", 1, Some(0), with_other))
        .is_err());
    assert_eq!(r.len(), 2);
    events(&mut r);
    let list = r.register(T0, AOR, &req(b"c2", 1, Some(0), star)).unwrap();
    assert!(list.is_empty());
    assert_eq!(r.len(), 0);
    assert_eq!(events(&mut r), vec![Event::Unreachable { aor: AOR.into() }]);
}

#[test]
fn an_out_of_order_cseq_on_the_same_call_id_changes_nothing() {
    let mut r = Registrar::new();
    let c: &[&[u8]] = &[b"<sip:bob@10.0.0.1>"];
    r.register(T0, AOR, &req(b"c1", 5, Some(600), c)).unwrap();
    // Same Call-ID, same or lower CSeq: refused.
    assert!(r.register(T0, AOR, &req(b"c1", 5, Some(0), c)).is_err());
    assert!(r.register(T0, AOR, &req(b"c1", 4, Some(0), c)).is_err());
    let star: &[&[u8]] = &[b"*"];
    assert!(r.register(T0, AOR, &req(b"c1", 3, Some(0), star)).is_err());
    assert_eq!(r.len(), 1);
    // Another Call-ID (another device or a restarted one) may change it whatever its CSeq.
    let list = r.register(T0, AOR, &req(b"c9", 1, Some(0), c)).unwrap();
    assert!(list.is_empty());
}

#[test]
fn bindings_lapse_on_time_and_say_so() {
    let mut r = Registrar::new();
    let c: &[&[u8]] = &[b"<sip:bob@10.0.0.1>;expires=60, <sip:bob@10.0.0.2>;expires=120"];
    r.register(T0, AOR, &req(b"c1", 1, None, c)).unwrap();
    events(&mut r);
    assert_eq!(r.poll_timeout(), Some(T0 + 60_000));
    r.handle_timeout(T0 + 59_999);
    assert_eq!(r.len(), 2);
    r.handle_timeout(T0 + 60_000);
    assert_eq!(r.len(), 1);
    assert!(events(&mut r).is_empty());
    assert_eq!(r.poll_timeout(), Some(T0 + 120_000));
    r.handle_timeout(T0 + 120_000);
    assert_eq!(r.len(), 0);
    assert_eq!(events(&mut r), vec![Event::Unreachable { aor: AOR.into() }]);
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn a_refreshed_binding_does_not_lapse_at_its_old_time() {
    let mut r = Registrar::new();
    let c: &[&[u8]] = &[b"<sip:bob@10.0.0.1>"];
    r.register(T0, AOR, &req(b"c1", 1, Some(60), c)).unwrap();
    r.register(T0 + 50_000, AOR, &req(b"c1", 2, Some(60), c))
        .unwrap();
    r.handle_timeout(T0 + 60_000);
    assert_eq!(r.lookup(T0 + 60_000, AOR).count(), 1);
    r.handle_timeout(T0 + 110_000);
    assert_eq!(r.len(), 0);
}

#[test]
fn contacts_per_aor_are_bounded() {
    let mut r = Registrar::new();
    let values: Vec<Vec<u8>> = (0..=REGISTRAR_CONTACTS_PER_AOR_MAX)
        .map(|i| format!("<sip:bob@10.0.0.{}>", i + 1).into_bytes())
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    assert_eq!(
        r.register(T0, AOR, &req(b"c1", 1, None, &refs)),
        Err(RegisterError::TooManyContacts)
    );
    let list = r
        .register(
            T0,
            AOR,
            &req(b"c1", 1, None, &refs[..REGISTRAR_CONTACTS_PER_AOR_MAX]),
        )
        .unwrap();
    assert_eq!(list.len(), REGISTRAR_CONTACTS_PER_AOR_MAX);
}

#[test]
fn malformed_and_non_sip_contacts_are_400() {
    let mut r = Registrar::new();
    for bad in [
        &b"<sip:bob@>"[..],
        b"<tel:+15551234>",
        b"<sip:bob@10.0.0.1>;q=2",
        b"*, <sip:x@y>",
    ] {
        let c: &[&[u8]] = &[bad];
        assert!(
            matches!(
                r.register(T0, AOR, &req(b"c1", 1, Some(0), c)),
                Err(RegisterError::BadRequest(_))
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(r.len(), 0);
}

#[test]
fn the_feature_tags_and_instance_are_kept() {
    let mut r = Registrar::new();
    let c: &[&[u8]] = &[
        b"<sip:bob@10.0.0.1;transport=tcp>;+g.oma.sip-im;+g.oma.sip-im.large-message;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"",
    ];
    let list = r.register(T0, AOR, &req(b"c1", 1, None, c)).unwrap();
    assert!(list[0].im && list[0].large_message);
    assert_eq!(
        list[0].instance.as_deref(),
        Some(&b"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"[..])
    );
    assert_eq!(&*list[0].uri, b"sip:bob@10.0.0.1;transport=tcp");
}

#[test]
fn among_equal_q_the_newest_binding_comes_first() {
    let mut r = Registrar::new();
    let old: &[&[u8]] = &[b"<sip:bob@10.0.0.1:5060>"];
    r.register(T0, AOR, &req(b"boot-1", 1, Some(600), old))
        .unwrap();
    // The UA restarted elsewhere with a new Call-ID; the old binding is still there.
    let new: &[&[u8]] = &[b"<sip:bob@10.0.0.1:5062>"];
    let list = r
        .register(T0 + 1000, AOR, &req(b"boot-2", 1, Some(600), new))
        .unwrap();
    assert_eq!(
        uris(&list),
        vec![&b"sip:bob@10.0.0.1:5062"[..], b"sip:bob@10.0.0.1:5060"]
    );
    assert_eq!(
        &*r.lookup(T0 + 1000, AOR).next().unwrap().uri,
        b"sip:bob@10.0.0.1:5062"
    );
}
