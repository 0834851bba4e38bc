//! Redis's glob matching (`stringmatchlen` of util.c) for KEYS and SCAN ... MATCH: `*`, `?`,
//! `[...]` classes with `^` negation, ranges and `\` escapes, `\` escaping any character.
//! Case-sensitive; a long run of stars cannot make it exponential (Redis's skip rule).

/// Whether KEYS/SCAN with `pattern` (none: every key) shows `key`: a lone `*` takes every
/// key, the empty one included (Redis's all-keys case); otherwise [`glob_match`].
pub fn key_matches(pattern: Option<&[u8]>, key: &[u8]) -> bool {
    match pattern {
        None | Some(b"*") => true,
        Some(p) => glob_match(p, key),
    }
}

/// Whether `s` matches the glob `pattern`, as Redis's `stringmatchlen` decides it (which
/// does not match an empty string with `*`: see [`key_matches`]).
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, s, &mut skip_longer, 0)
}

fn match_impl(p: &[u8], s: &[u8], skip_longer: &mut bool, nesting: usize) -> bool {
    // Protection against abusive patterns, as Redis.
    if nesting > 1000 {
        return false;
    }
    let (mut pi, mut si) = (0usize, 0usize);
    let at = |v: &[u8], i: usize| v.get(i).copied();
    while pi < p.len() && si < s.len() {
        match p[pi] {
            b'*' => {
                while at(p, pi + 1) == Some(b'*') {
                    pi += 1;
                }
                if pi + 1 == p.len() {
                    return true;
                }
                while si < s.len() {
                    if match_impl(&p[pi + 1..], &s[si..], skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    si += 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let not = at(p, pi) == Some(b'^');
                if not {
                    pi += 1;
                }
                let c = s[si];
                let mut matched = false;
                loop {
                    match at(p, pi) {
                        None => {
                            // An unclosed class runs to the end of the pattern.
                            pi -= 1;
                            break;
                        }
                        Some(b'\\') if pi + 1 < p.len() => {
                            pi += 1;
                            if p[pi] == c {
                                matched = true;
                            }
                        }
                        Some(b']') => break,
                        Some(start) if pi + 2 < p.len() && p[pi + 1] == b'-' => {
                            let end = p[pi + 2];
                            let (lo, hi) = if start > end {
                                (end, start)
                            } else {
                                (start, end)
                            };
                            pi += 2;
                            if (lo..=hi).contains(&c) {
                                matched = true;
                            }
                        }
                        Some(x) => {
                            if x == c {
                                matched = true;
                            }
                        }
                    }
                    pi += 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                si += 1;
            }
            b => {
                let lit = if b == b'\\' && pi + 1 < p.len() {
                    pi += 1;
                    p[pi]
                } else {
                    b
                };
                if lit != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while at(p, pi) == Some(b'*') {
                pi += 1;
            }
            break;
        }
    }
    pi >= p.len() && si == s.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match as m;

    #[test]
    fn redis_glob_rules() {
        // Checked against redis-server's KEYS on the same keys.
        assert!(!m(b"*", b""));
        assert!(!m(b"**", b""));
        assert!(super::key_matches(Some(b"*"), b""));
        assert!(m(b"?", b"]"));
        assert!(m(b"*b", b"axxb"));
        assert!(m(b"*", b"anything"));
        assert!(m(b"h?llo", b"hello"));
        assert!(!m(b"h?llo", b"hllo"));
        assert!(m(b"h*llo", b"heeeello"));
        assert!(m(b"h*llo", b"hllo"));
        assert!(m(b"h[ae]llo", b"hallo"));
        assert!(!m(b"h[ae]llo", b"hillo"));
        assert!(m(b"h[^e]llo", b"hallo"));
        assert!(!m(b"h[^e]llo", b"hello"));
        assert!(m(b"h[a-b]llo", b"hbllo"));
        assert!(m(b"h[b-a]llo", b"hallo"), "reversed range");
        assert!(!m(b"h[a-b]llo", b"hcllo"));
        assert!(m(b"h\\*llo", b"h*llo"));
        assert!(!m(b"h\\*llo", b"hello"));
        assert!(m(b"[\\]]", b"]"));
        assert!(m(b"a[bc", b"ab"), "unclosed class runs to the end");
        assert!(m(b"user:*:name", b"user:42:name"));
        assert!(!m(b"user:*:name", b"user:42:age"));
        assert!(m(b"a**b", b"axxb"));
        assert!(m(b"ab*", b"ab"));
        assert!(!m(b"", b"a"));
        assert!(m(b"", b""));
        assert!(!m(b"abc", b"ab"));
        assert!(m(b"\\", b"\\"));
        let long = vec![b'a'; 60];
        assert!(!m(b"a*a*a*a*a*a*a*a*a*a*a*a*b", &long), "stays fast");
    }
}
