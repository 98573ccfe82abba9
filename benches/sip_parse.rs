//! SIP header-index throughput (bytes/s) and allocations per parse.
//!
//! `cargo bench --bench sip_parse`. The messages are what an IM appliance sees most:
//! REGISTER, INVITE with an MSRP SDP offer, pager MESSAGE, and a 200 response. A counting
//! global allocator proves indexing a message allocates nothing; the count is printed and a
//! non-zero count fails the bench.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imrelay::sip::header::HeaderName;
use imrelay::sip::message::{Framing, Message};
use imrelay::sip::values::{CSeq, Via};

#[path = "common/counting.rs"]
mod counting;
use counting::allocations;

const REGISTER: &[u8] = b"REGISTER sip:ims.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.44:49152;branch=z9hG4bK3f9a7c2e1d;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@ims.example.com>;tag=4fa3b2c1\r\n\
To: \"Alice\" <sip:alice@ims.example.com>\r\n\
Call-ID: 9b1f6c1e-7d3a-4f1b-a1f2-55c3d7e8a9b0\r\n\
CSeq: 42 REGISTER\r\n\
Contact: <sip:alice@192.0.2.44:49152;transport=tcp;ob>;+sip.instance=\"<urn:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0>\";+g.oma.sip-im;+g.oma.sip-im.large-message;expires=3600\r\n\
Supported: path, gruu, outbound\r\n\
Allow: INVITE, ACK, CANCEL, BYE, MESSAGE, OPTIONS, NOTIFY, REFER, UPDATE\r\n\
User-Agent: ExampleIM/3.2.1\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\
\r\n";

const INVITE: &[u8] = b"INVITE sip:bob@ims.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.44:49152;branch=z9hG4bK77ef4c2312983.1;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:pcscf.ims.example.com;lr>\r\n\
From: \"Alice\" <sip:alice@ims.example.com>;tag=2c4b7a\r\n\
To: <sip:bob@ims.example.com>\r\n\
Call-ID: a84b4c76e66710@192.0.2.44\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.44:49152;transport=tcp>;+g.oma.sip-im\r\n\
Accept-Contact: *;+g.oma.sip-im\r\n\
Supported: timer\r\n\
Allow: INVITE, ACK, CANCEL, BYE, MESSAGE, OPTIONS\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 262\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844527 IN IP4 192.0.2.44\r\n\
s= \r\n\
c=IN IP4 192.0.2.44\r\n\
t=0 0\r\n\
m=message 7394 TCP/MSRP *\r\n\
a=accept-types:message/cpim text/plain\r\n\
a=accept-wrapped-types:*\r\n\
a=path:msrp://192.0.2.44:7394/2s93i93idj;tcp\r\n\
a=setup:active\r\n\
a=max-size:1048576\r\n";

const MESSAGE: &[u8] = b"MESSAGE sip:bob@ims.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.44:5060;branch=z9hG4bKnashds8;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@ims.example.com>;tag=49583\r\n\
To: <sip:bob@ims.example.com>\r\n\
Call-ID: asd88asd77a@192.0.2.44\r\n\
CSeq: 1 MESSAGE\r\n\
Accept-Contact: *;+g.oma.sip-im\r\n\
Content-Type: text/plain;charset=UTF-8\r\n\
Content-Length: 120\r\n\
\r\n\
Watson, come here. I want to see you. This message is exactly one hundred and twenty bytes long, padded to length ok!!\r\n";

const OK200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKproxy1\r\n\
Via: SIP/2.0/UDP 192.0.2.44:5060;branch=z9hG4bKnashds8;rport=5060;received=192.0.2.44\r\n\
From: <sip:alice@ims.example.com>;tag=49583\r\n\
To: <sip:bob@ims.example.com>;tag=ab30317f\r\n\
Call-ID: asd88asd77a@192.0.2.44\r\n\
CSeq: 1 MESSAGE\r\n\
Server: imrelay/0.1.0\r\n\
Content-Length: 0\r\n\
\r\n";

const MESSAGES: [(&str, &[u8]); 4] = [
    ("register", REGISTER),
    ("invite_sdp", INVITE),
    ("message", MESSAGE),
    ("response_200", OK200),
];

fn allocations_per_parse() {
    let mut m = Message::new();
    for (name, bytes) in MESSAGES {
        assert!(
            matches!(m.parse_stream(bytes), Ok(Framing::Complete(n)) if n == bytes.len()),
            "{name}"
        );
        let before = allocations();
        for _ in 0..10_000 {
            let _ = black_box(m.parse_stream(black_box(bytes)));
        }
        let after = allocations();
        let per = (after - before) as f64 / 10_000.0;
        println!(
            "allocations per parse ({name}, {} bytes): {per}",
            bytes.len()
        );
        assert_eq!(after, before, "indexing {name} allocated");
    }
}

fn bench(c: &mut Criterion) {
    allocations_per_parse();
    let mut g = c.benchmark_group("sip_header_index");
    for (name, bytes) in MESSAGES {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut m = Message::new();
        g.bench_function(name, |b| {
            b.iter(|| black_box(m.parse_stream(black_box(bytes)).is_ok()))
        });
    }
    g.finish();

    // Index plus the typed values every request needs (top Via, CSeq, Call-ID).
    let mut g = c.benchmark_group("sip_index_and_typed_values");
    for (name, bytes) in MESSAGES {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut m = Message::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                let _ = m.parse_stream(black_box(bytes));
                let via = m
                    .value(bytes, HeaderName::Via)
                    .and_then(|v| Via::parse_all(v).next());
                let cseq = m.value(bytes, HeaderName::CSeq).map(CSeq::parse);
                black_box((
                    via.is_some(),
                    cseq.is_some(),
                    m.value(bytes, HeaderName::CallId),
                ))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
