//! Micro-benchmark for issue 9: validating a body of type
//! `a((((…(y)…))))` must cost about the same at any nesting depth for the
//! same body size. Run through `bench/nesting`, which also counts
//! instructions under callgrind (figures that do not drift between runs).
//!
//!     body_nesting [--size BYTES] [--reps N] [--depth D]...
//!
//! Prints, per depth, the best and median time of `validate_body` over N
//! runs and the ratio of the best time to that of the first depth given.

use std::time::{Duration, Instant};

use busbar::wire::body::validate_body;
use busbar::wire::Endian;

/// Signature `a((((…(y)…))))` with `depth` structs and a body of about
/// `size` bytes: an array of one-byte structs, 8 bytes apart.
fn nested_array(depth: usize, size: usize) -> (String, Vec<u8>) {
    let sig = format!("a{}y{}", "(".repeat(depth), ")".repeat(depth));
    let n = (size.max(16) - 8) / 8;
    let len = (n - 1) * 8 + 1;
    let mut body = vec![0u8; 8 + len];
    body[..4].copy_from_slice(&(len as u32).to_le_bytes());
    for i in 0..n {
        body[8 + i * 8] = 1;
    }
    (sig, body)
}

fn main() {
    let mut size = 32 << 20;
    let mut reps = 5;
    let mut depths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--size" => size = val(),
            "--reps" => reps = val().max(1),
            "--depth" => depths.push(val()),
            _ => panic!("unknown argument {a}"),
        }
    }
    if depths.is_empty() {
        depths = vec![1, 8, 32];
    }
    let mut first = None;
    println!(
        "depth\tbytes\tbest_ms\tmedian_ms\tratio_to_depth_{}",
        depths[0]
    );
    for &d in &depths {
        let (sig, body) = nested_array(d, size);
        let mut times: Vec<Duration> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                let r = validate_body(sig.as_bytes(), &body, Endian::Little);
                let e = t.elapsed();
                assert_eq!(r, Ok(()), "depth {d}");
                e
            })
            .collect();
        times.sort();
        let best = times[0];
        let base = *first.get_or_insert(best);
        println!(
            "{d}\t{}\t{:.2}\t{:.2}\t{:.2}",
            body.len(),
            best.as_secs_f64() * 1e3,
            times[times.len() / 2].as_secs_f64() * 1e3,
            best.as_secs_f64() / base.as_secs_f64()
        );
    }
}
