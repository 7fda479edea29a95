//! Micro-benchmarks of the data plane's per-packet work: sealing and opening frames under each
//! cipher (a small packet, a full 1420-byte one, and a 64 KiB super-packet split into MTU
//! frames), the route lookup with 10 and 10,000 routes, and the TUN offload's split of a TCP
//! super-packet into segments and its coalescing back. Run with `cargo bench --bench dataplane`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use libp2p::PeerId;
use tun_rs::{GROTable, VIRTIO_NET_HDR_GSO_TCPV4, VirtioNetHdr, gso_split};
use weft::dataplane::frame::{self, Cipher, HEADER_LEN, Header, Key, OVERHEAD};
use weft::dataplane::peer::{Peer, Table};
use weft::dataplane::router::ipv4_destination;

const MTU: usize = 1420;

fn seal_open(c: &mut Criterion) {
    seal_open_with(c, "seal+open", Cipher::ChaCha20Poly1305);
    seal_open_with(c, "seal+open aes-256-gcm", Cipher::Aes256Gcm);
}

fn seal_open_with(c: &mut Criterion, group: &str, cipher: Cipher) {
    let key = Key::new(cipher, &[7; 32]);
    let mut group = c.benchmark_group(group);
    for (name, total) in [("64", 64), ("1420", MTU), ("65535 split", 65_535)] {
        let frames: Vec<usize> = (0..total.div_ceil(MTU))
            .map(|i| (total - i * MTU).min(MTU))
            .collect();
        let mut bufs: Vec<Vec<u8>> = frames.iter().map(|&n| vec![0u8; n + OVERHEAD]).collect();
        group.throughput(Throughput::Bytes(total as u64));
        let mut counter = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                for (buf, &len) in bufs.iter_mut().zip(&frames) {
                    counter += 1;
                    let header = Header {
                        receiver: 1,
                        counter,
                    };
                    frame::seal(&key, header, buf, len).unwrap();
                    black_box(frame::open(&key, buf).unwrap());
                }
            })
        });
    }
    group.finish();
}

fn router(c: &mut Criterion) {
    let mut group = c.benchmark_group("route lookup");
    for routes in [10u32, 10_000] {
        let table = Table {
            routes: (0..routes)
                .map(|i| {
                    let address = Ipv4Addr::from(0x0a00_0000 + i + 1);
                    (address, Arc::new(Peer::new(PeerId::random())))
                })
                .collect::<HashMap<_, _>>(),
            ..Table::default()
        };
        let mut packet = [0u8; 84];
        packet[0] = 0x45;
        let target = Ipv4Addr::from(0x0a00_0000 + routes / 2);
        packet[16..20].copy_from_slice(&target.octets());
        group.bench_function(BenchmarkId::from_parameter(routes), |b| {
            b.iter(|| {
                let destination = ipv4_destination(black_box(&packet)).unwrap();
                black_box(table.routes.get(&destination).map(Arc::as_ptr))
            })
        });
    }
    group.finish();
}

/// A 64 KiB IPv4/TCP super-packet as the kernel hands it over a TUN with TSO on.
fn super_packet() -> (VirtioNetHdr, Vec<u8>) {
    let mss = MTU - 40;
    let payload = 65_535 - 40;
    let mut packet = vec![0u8; 40 + payload];
    packet[0] = 0x45;
    let total = packet.len() as u16;
    packet[2..4].copy_from_slice(&total.to_be_bytes());
    packet[8] = 64;
    packet[9] = 6;
    packet[12..16].copy_from_slice(&[10, 1, 0, 1]);
    packet[16..20].copy_from_slice(&[10, 1, 0, 2]);
    packet[20..22].copy_from_slice(&5001u16.to_be_bytes());
    packet[22..24].copy_from_slice(&40000u16.to_be_bytes());
    packet[32] = 0x50;
    packet[33] = 0x10;
    let hdr = VirtioNetHdr {
        flags: 1,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 40,
        gso_size: mss as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    (hdr, packet)
}

fn offload(c: &mut Criterion) {
    let (hdr, packet) = super_packet();
    let mut group = c.benchmark_group("tun offload");
    group.throughput(Throughput::Bytes(packet.len() as u64));
    let mut input = packet.clone();
    let mut out = vec![vec![0u8; HEADER_LEN + MTU + OVERHEAD]; 64];
    let mut sizes = vec![0usize; 64];
    group.bench_function("split 64 KiB", |b| {
        b.iter(|| {
            input.copy_from_slice(&packet);
            black_box(gso_split(&mut input, hdr, &mut out, &mut sizes, HEADER_LEN, false).unwrap())
        })
    });
    let n = gso_split(
        &mut input.clone(),
        hdr,
        &mut out,
        &mut sizes,
        HEADER_LEN,
        false,
    )
    .unwrap();
    let segments: Vec<Vec<u8>> = out[..n]
        .iter()
        .zip(&sizes)
        .map(|(buf, &size)| {
            let mut v = Vec::with_capacity(HEADER_LEN + 65_536);
            v.extend_from_slice(&buf[..HEADER_LEN + size]);
            v
        })
        .collect();
    let mut gro = GROTable::default();
    let mut bufs = segments.clone();
    group.bench_function("coalesce 64 KiB", |b| {
        b.iter(|| {
            for (buf, segment) in bufs.iter_mut().zip(&segments) {
                buf.clear();
                buf.extend_from_slice(segment);
            }
            black_box(gro.apply_gro(&mut bufs, HEADER_LEN, false).is_ok())
        })
    });
    group.finish();
}

criterion_group!(benches, seal_open, router, offload);
criterion_main!(benches);
