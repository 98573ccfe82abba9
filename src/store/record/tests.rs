//! Format vectors: golden bytes, round trips of every kind, and damage detection.

use super::*;

fn meta<'a>(body_len: u64) -> Meta<'a> {
    Meta {
        id: MessageId(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
        stored_at_ms: 1_764_000_000_000,
        expires_at_ms: 1_764_604_800_000,
        total_len: body_len,
        sender: b"sip:alice@example.com",
        recipient: b"sip:bob@example.com",
        content_type: b"message/cpim",
    }
}

fn all_kinds() -> Vec<Record<'static>> {
    vec![
        Record::Segment {
            recipient: b"sip:bob@example.com",
            seq: 7,
            created_at_ms: 1_764_000_000_000,
        },
        Record::Message {
            meta: meta(5),
            body: b"hello",
        },
        Record::Message {
            meta: meta(0),
            body: b"",
        },
        Record::Begin {
            meta: meta(LEN_UNKNOWN),
        },
        Record::Chunk {
            id: MessageId(9),
            offset: 65_536,
            data: b"\x00\x01chunk bytes\xff",
        },
        Record::Commit {
            id: MessageId(9),
            total_len: 65_550,
            body_crc: 0xdead_beef,
        },
        Record::Abort {
            id: MessageId(9),
            reason: 413,
        },
        Record::Delivered { id: MessageId(9) },
        Record::Expired { id: MessageId(10) },
    ]
}

#[test]
fn golden_delivered_record() {
    let mut out = Vec::new();
    let n = encode(&Record::Delivered { id: MessageId(1) }, &mut out).unwrap();
    assert_eq!(n, 32);
    let mut expect = b"IMRr\x01\x07\x00\x00\x10\x00\x00\x00".to_vec();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&expect[4..12]), &1u128.to_le_bytes());
    expect.extend_from_slice(&crc.to_le_bytes());
    expect.extend_from_slice(&1u128.to_le_bytes());
    assert_eq!(out, expect);
}

#[test]
fn every_kind_round_trips_and_is_aligned() {
    let mut out = Vec::new();
    let mut at = Vec::new();
    for r in all_kinds() {
        at.push(out.len());
        let n = encode(&r, &mut out).unwrap();
        assert_eq!(n % ALIGN, 0);
        assert_eq!(n, r.encoded_len());
    }
    for (i, r) in all_kinds().iter().enumerate() {
        let (back, n) = decode(&out[at[i]..]).unwrap();
        assert_eq!(back, *r);
        assert_eq!(at[i] + n, *at.get(i + 1).unwrap_or(&out.len()));
    }
}

#[test]
fn every_truncation_is_short_never_a_record() {
    for r in all_kinds() {
        let mut out = Vec::new();
        encode(&r, &mut out).unwrap();
        let payload_end = HEADER_BYTES + r.payload_len();
        for cut in 1..payload_end {
            match decode(&out[..cut]) {
                Err(DecodeError::Short { .. }) => {}
                other => panic!("{r:?} cut at {cut}: {other:?}"),
            }
        }
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    for r in all_kinds() {
        let mut out = Vec::new();
        encode(&r, &mut out).unwrap();
        let payload_end = HEADER_BYTES + r.payload_len();
        for byte in 0..payload_end {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[byte] ^= 1 << bit;
                if let Ok((back, _)) = decode(&bad) {
                    panic!("{r:?}: flip {byte}.{bit} decoded as {back:?}");
                }
            }
        }
    }
}

#[test]
fn newer_versions_and_unknown_kinds_are_refused_by_name() {
    let mut out = Vec::new();
    encode(&Record::Delivered { id: MessageId(1) }, &mut out).unwrap();
    let reseal = |b: &mut Vec<u8>| {
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b[4..12]), &b[16..32]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
    };
    let mut v2 = out.clone();
    v2[4] = 2;
    reseal(&mut v2);
    assert_eq!(decode(&v2).unwrap_err(), DecodeError::UnknownVersion(2));
    let mut k = out.clone();
    k[5] = 99;
    reseal(&mut k);
    assert_eq!(decode(&k).unwrap_err(), DecodeError::UnknownKind(99));
    let mut res = out.clone();
    res[6] = 1;
    reseal(&mut res);
    assert_eq!(decode(&res).unwrap_err(), DecodeError::Reserved);
}

#[test]
fn a_message_whose_length_disagrees_with_its_body_is_bad_payload() {
    let mut out = Vec::new();
    // Encode a valid message, then rewrite total_len and reseal: the checksum passes, the
    // layout check must not.
    encode(
        &Record::Message {
            meta: meta(5),
            body: b"hello",
        },
        &mut out,
    )
    .unwrap();
    let total_len_at = HEADER_BYTES + 16 + 16;
    out[total_len_at..total_len_at + 8].copy_from_slice(&6u64.to_le_bytes());
    let len = u32::from_le_bytes([out[8], out[9], out[10], out[11]]) as usize;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[4..12]), &out[16..16 + len]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        decode(&out).unwrap_err(),
        DecodeError::BadPayload(Kind::Message)
    );
}

#[test]
fn oversize_fields_and_payloads_are_refused_before_writing() {
    let long = vec![b'a'; STORE_URI_BYTES_MAX + 1];
    let mut m = meta(0);
    m.sender = &long;
    let mut out = Vec::new();
    assert_eq!(
        encode(&Record::Message { meta: m, body: b"" }, &mut out),
        Err(EncodeError::FieldTooLong {
            len: long.len(),
            max: STORE_URI_BYTES_MAX
        })
    );
    let big = vec![0u8; STORE_RECORD_PAYLOAD_BYTES_MAX];
    assert!(matches!(
        encode(
            &Record::Chunk {
                id: MessageId(1),
                offset: 0,
                data: &big
            },
            &mut out
        ),
        Err(EncodeError::PayloadTooLarge { .. })
    ));
    assert!(out.is_empty(), "nothing written on refusal");
}

#[test]
fn zeroes_are_recognised_as_unwritten_space() {
    assert_eq!(decode(&[0u8; 64]).unwrap_err(), DecodeError::Zeroes);
    assert_eq!(decode(&[0u8; 3]).unwrap_err(), DecodeError::Zeroes);
    assert_eq!(
        decode(b"IMR").unwrap_err(),
        DecodeError::Short { need: 16, have: 3 }
    );
}

#[test]
fn message_ids_print_and_parse_as_hex() {
    let id = MessageId(0xabc);
    assert_eq!(id.to_string(), "00000000000000000000000000000abc");
    assert_eq!(
        "00000000000000000000000000000abc".parse::<MessageId>(),
        Ok(id)
    );
    assert!("xyz".parse::<MessageId>().is_err());
}
