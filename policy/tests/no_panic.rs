//! Mutated inputs never panic the parsers.

use std::path::Path;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

const PIECES: &[&str] = &[
    "<",
    ">",
    "/>",
    "</",
    "&",
    ";",
    "&#",
    "&#x",
    "\"",
    "'",
    "=",
    " ",
    "\n",
    "\r",
    "]]>",
    "<!--",
    "-->",
    "<![CDATA[",
    "<?",
    "?>",
    "<!DOCTYPE a [<!ENTITY e \"v\">]>",
    "&e;",
    "\u{e9}",
    "\\",
    "#",
    "[",
    "]",
    "\0",
];

fn mutate(rng: &mut Lcg, base: &str) -> String {
    let mut s: Vec<char> = base.chars().collect();
    for _ in 0..(1 + rng.next() % 4) {
        let at = if s.is_empty() {
            0
        } else {
            rng.next() % (s.len() + 1)
        };
        match rng.next() % 3 {
            0 if at < s.len() => {
                s.remove(at);
            }
            _ => {
                let p = PIECES[rng.next() % PIECES.len()];
                for (k, c) in p.chars().enumerate() {
                    s.insert(at + k, c);
                }
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn config_parser_survives_garbage() {
    let base = policy::SYSTEM_CONF;
    let mut rng = Lcg(1);
    let opts = policy::LoadOptions {
        xdg_runtime_dir: None,
        ..policy::LoadOptions::from_env()
    };
    for _ in 0..1500 {
        let text = mutate(&mut rng, base);
        let _ = policy::load_str_with(&text, Path::new("/nonexistent/x.conf"), &opts);
    }
}

#[test]
fn service_parser_and_shell_survive_garbage() {
    let base =
        "[D-BUS Service]\nName=org.example.Foo\nExec=/bin/foo \"a b\" 'c' \\d # e\nUser=root\n";
    let mut rng = Lcg(2);
    for _ in 0..3000 {
        let text = mutate(&mut rng, base);
        if let Ok(s) = policy::parse_service_file(&text, Path::new("/x.service")) {
            let _ = policy::split_exec(&s.exec);
        }
        let _ = policy::split_exec(&text);
    }
}
