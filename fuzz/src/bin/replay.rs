//! Deterministic driver for busbar's fuzz targets, without libFuzzer.
//!
//!   cargo run --release --no-default-features --bin replay -- [options] [target...]
//!
//! Options:
//!   --corpus DIR   corpus root (default: the `corpus` dir next to this crate);
//!                  each target reads DIR/<target>/* and regressions/<target>-*
//!   --iters N      after replaying, run N seeded mutations per target (default 0)
//!   --seed S       mutation seed (default 1)
//!
//! Every file is run through its target; a panic aborts with the file name
//! (or, in the mutation loop, writes the input to fuzz/artifacts/replay/).
//! With no target names, all targets run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use busbar_fuzz::TARGETS;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[
    0, 1, 2, 4, 7, 8, 0x7f, 0x80, 0xff, b'l', b'B', b'a', b'(', b')', b'{', b'}', b'v', b's',
    b'\'', b'\\', b',', b'=', b'<', b'>', b'/', b'\r', b'\n', b' ',
];

fn mutate(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = 1 + rng.below(8.min(v.len() - i));
                v.drain(i..i + n);
            }
            4 if !v.is_empty() => {
                // Overwrite a u32 with an interesting value (either endian).
                let i = rng.below(v.len());
                let val: u32 =
                    [0, 1, 0x7f, 0xff, 0x100, 0xffff, 0x0400_0000, u32::MAX][rng.below(8)];
                let b = if rng.below(2) == 0 {
                    val.to_le_bytes()
                } else {
                    val.to_be_bytes()
                };
                for (k, x) in b.iter().enumerate() {
                    if let Some(slot) = v.get_mut(i + k) {
                        *slot = *x;
                    }
                }
            }
            5 if !v.is_empty() => {
                // Duplicate a slice.
                let i = rng.below(v.len());
                let n = 1 + rng.below(16.min(v.len() - i));
                let piece = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, piece);
            }
            6 if !pool.is_empty() => {
                // Splice in part of another corpus file.
                let o = &pool[rng.below(pool.len())];
                if !o.is_empty() {
                    let i = rng.below(o.len());
                    let n = 1 + rng.below((o.len() - i).min(64));
                    let at = rng.below(v.len() + 1);
                    v.splice(at..at, o[i..i + n].iter().copied());
                }
            }
            _ if v.len() > 1 => {
                let n = rng.below(v.len());
                v.truncate(n.max(1));
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v.truncate(64 * 1024);
    v
}

fn read_dir_files(dir: &Path, prefix: Option<&str>) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(pre) = prefix {
            if !name.starts_with(pre) {
                continue;
            }
        }
        if p.is_file() {
            if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

fn main() {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut corpus = here.join("corpus");
    let mut iters: u64 = 0;
    let mut seed: u64 = 1;
    let mut names: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--corpus" => corpus = PathBuf::from(args.next().expect("--corpus DIR")),
            "--iters" => iters = args.next().and_then(|s| s.parse().ok()).expect("--iters N"),
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()).expect("--seed S"),
            "-h" | "--help" => {
                eprintln!("usage: replay [--corpus DIR] [--iters N] [--seed S] [target...]");
                return;
            }
            _ => names.push(a),
        }
    }
    for n in &names {
        assert!(
            TARGETS.iter().any(|(t, _)| t == n),
            "unknown target {n}; known: {:?}",
            TARGETS.iter().map(|t| t.0).collect::<Vec<_>>()
        );
    }
    let mut total_files = 0;
    for (name, f) in TARGETS {
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        let mut files = read_dir_files(&corpus.join(name), None);
        let prefix = format!("{name}-");
        files.extend(read_dir_files(&here.join("regressions"), Some(&prefix)));
        let start = Instant::now();
        for (p, data) in &files {
            eprintln!("replay {name}: {}", p.display());
            f(data);
        }
        total_files += files.len();
        println!(
            "{name}: replayed {} files in {:?}",
            files.len(),
            start.elapsed()
        );
        if iters == 0 {
            continue;
        }
        let pool: Vec<Vec<u8>> = files.into_iter().map(|(_, d)| d).collect();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let art = here.join("artifacts").join("replay");
        let start = Instant::now();
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let mut crashes = 0;
        for i in 0..iters {
            let base: &[u8] = if pool.is_empty() {
                &[]
            } else {
                &pool[rng.below(pool.len())]
            };
            let input = mutate(&mut rng, base, &pool);
            let r = std::panic::catch_unwind(|| f(&input));
            if let Err(e) = r {
                crashes += 1;
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let _ = std::fs::create_dir_all(&art);
                let out = art.join(format!("{name}-seed{seed}-iter{i}"));
                let _ = std::fs::write(&out, &input);
                eprintln!(
                    "{name}: PANIC at iteration {i}: {msg}\n  input written to {}",
                    out.display()
                );
                if crashes >= 5 {
                    break;
                }
            }
        }
        std::panic::set_hook(default_hook);
        println!(
            "{name}: {iters} mutations (seed {seed}) in {:?}, {crashes} panics",
            start.elapsed()
        );
    }
    println!("{total_files} corpus files, all targets returned");
}
