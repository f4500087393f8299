//! Splitting an `Exec=` line into argv the way dbus-daemon does
//! (dbus/dbus-shell.c, itself derived from GLib's g_shell_parse_argv):
//! single and double quotes, backslash escapes, `#` comments, no expansion.
//!
//! Quirks kept for compatibility: a `#` starts a comment even inside a word,
//! a newline outside quotes always ends a word (possibly an empty one), and
//! the end of the line always ends a word, so trailing white space yields a
//! final empty argument.

use std::fmt;

/// Why an `Exec=` line could not be split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShellError {
    /// A quote (or a trailing backslash) was not closed.
    UnclosedQuotes,
    /// The line produced no words.
    NoTokens,
}

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShellError::UnclosedQuotes => "Unclosed quotes in command line",
            ShellError::NoTokens => "No tokens found in command line",
        })
    }
}

impl std::error::Error for ShellError {}

/// The state of the tokenizer: what the previous characters opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Nothing,
    Backslash,
    Comment,
    Quote(u8),
}

/// Splits the command line into raw (still quoted) words.
fn tokenize(line: &[u8]) -> Result<Vec<Vec<u8>>, ShellError> {
    let mut words = Vec::new();
    let mut word = Vec::new();
    let mut open = Open::Nothing;
    // the previous character was a backslash that is not itself escaped
    let mut escaped = false;
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        match open {
            Open::Backslash => {
                if c != b'\n' {
                    word.push(b'\\');
                    word.push(c);
                }
                open = Open::Nothing;
            }
            Open::Comment => {
                while i < line.len() && line[i] != b'\n' {
                    i += 1;
                }
                open = Open::Nothing;
                if i >= line.len() {
                    break;
                }
            }
            Open::Quote(q) => {
                if c == q && !(q == b'"' && escaped) {
                    open = Open::Nothing;
                }
                word.push(c);
            }
            Open::Nothing => match c {
                b'\n' => words.push(std::mem::take(&mut word)),
                b' ' | b'\t' => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                b'\'' | b'"' => {
                    word.push(c);
                    open = Open::Quote(c);
                }
                b'#' => open = Open::Comment,
                b'\\' => open = Open::Backslash,
                _ => word.push(c),
            },
        }
        escaped = line.get(i) == Some(&b'\\') && !escaped;
        i += 1;
    }
    words.push(word);
    if open != Open::Nothing {
        return Err(ShellError::UnclosedQuotes);
    }
    Ok(words)
}

/// Removes quoting from one word.
fn unquote(word: &[u8]) -> Result<Vec<u8>, ShellError> {
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        match word[i] {
            b'\\' => {
                if let Some(&c) = word.get(i + 1) {
                    if c != b'\n' {
                        out.push(c);
                    }
                    i += 1;
                }
                i += 1;
            }
            b'\'' => {
                let rest = &word[i + 1..];
                let end = rest
                    .iter()
                    .position(|&c| c == b'\'')
                    .ok_or(ShellError::UnclosedQuotes)?;
                out.extend_from_slice(&rest[..end]);
                i += end + 2;
            }
            b'"' => {
                i += 1;
                loop {
                    match word.get(i) {
                        None => return Err(ShellError::UnclosedQuotes),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => match word.get(i + 1) {
                            Some(&c @ (b'"' | b'\\' | b'`' | b'$' | b'\n')) => {
                                out.push(c);
                                i += 2;
                            }
                            _ => {
                                out.push(b'\\');
                                i += 1;
                            }
                        },
                        Some(&c) => {
                            out.push(c);
                            i += 1;
                        }
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Splits an `Exec=` command line into arguments like dbus-daemon.
pub fn split_exec(exec: &str) -> Result<Vec<String>, ShellError> {
    let words = tokenize(exec.as_bytes())?;
    if words.is_empty() {
        return Err(ShellError::NoTokens);
    }
    words
        .iter()
        .map(|w| unquote(w).map(|u| String::from_utf8_lossy(&u).into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_exec(s).unwrap()
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(split("/bin/foo a  b\tc"), ["/bin/foo", "a", "b", "c"]);
        assert_eq!(split("foo 'a b' \"c d\""), ["foo", "a b", "c d"]);
        assert_eq!(split("foo 'a'\"b\"c"), ["foo", "abc"]);
        assert_eq!(
            split(r#"foo "a \"q\" \\ \$ \x""#),
            ["foo", r#"a "q" \ $ \x"#]
        );
        assert_eq!(split(r"foo a\ b \'x"), ["foo", "a b", "'x"]);
        assert_eq!(split("foo 'a\\b'"), ["foo", "a\\b"]);
        assert_eq!(split("foo $HOME ~ *"), ["foo", "$HOME", "~", "*"]);
    }

    #[test]
    fn dbus_quirks() {
        assert_eq!(split("foo # comment"), ["foo", ""]);
        assert_eq!(split("foo#bar baz"), ["foo"]);
        assert_eq!(split("foo \\\nbar"), ["foo", "bar"]);
        assert_eq!(split("foo "), ["foo", ""]);
        assert_eq!(split(""), [""]);
    }

    #[test]
    fn errors() {
        assert_eq!(split_exec("foo 'bar"), Err(ShellError::UnclosedQuotes));
        assert_eq!(split_exec("foo \"bar"), Err(ShellError::UnclosedQuotes));
        assert_eq!(split_exec("foo \"bar\\\""), Err(ShellError::UnclosedQuotes));
        assert_eq!(split_exec("foo \\"), Err(ShellError::UnclosedQuotes));
    }
}
