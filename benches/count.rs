//! Line counting alone, over in-memory buffers: `cargo bench --bench count`.
//!
//! The buffers are JSON Lines of the reference dataset's shape (about 3.6 KB a line, Japanese and
//! ASCII text), fed to `LineCounter` in the 256 KiB chunks the scan reads. Throughput is per core:
//! counting runs on one thread.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slotfill::store::count::LineCounter;

const CHUNK: usize = 256 * 1024;

/// `bytes` of JSON Lines, lines of `width` bytes.
fn jsonl(bytes: usize, width: usize) -> Vec<u8> {
    let text = "今日もいい天気ですね☀️ Hello, fediverse! 猫がかわいい🐈 #猫 ";
    let mut line = String::from("{\"id\":\"aav4kp6o0001\",\"text\":\"");
    for c in text.chars().cycle() {
        if line.len() + c.len_utf8() + 3 > width {
            break;
        }
        line.push(c);
    }
    while line.len() + 3 < width {
        line.push('x');
    }
    line.push_str("\"}\n");
    line.as_bytes().repeat(bytes / line.len())
}

fn count(data: &[u8], cap: Option<u64>) -> u64 {
    let mut counter = LineCounter::new(cap);
    for chunk in data.chunks(CHUNK) {
        if !counter.feed(chunk) {
            break;
        }
    }
    counter.finish().lines
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("count");
    for (name, width) in [("3.6KB-lines", 3_600), ("200B-lines", 200)] {
        // 32 MB: larger than the caches, as objects streamed from the network are.
        let data = jsonl(32 << 20, width);
        group.throughput(Throughput::Bytes(data.len() as u64));
        // Collector locations count with the cap (never reached here); complements without.
        group.bench_function(format!("{name}/capped"), |b| {
            b.iter(|| count(black_box(&data), Some(u64::MAX / 2)))
        });
        group.bench_function(format!("{name}/uncapped"), |b| {
            b.iter(|| count(black_box(&data), None))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
