//! Redis's glob-style pattern matching (`KEYS`, `SCAN … MATCH`): `*`, `?`,
//! `[abc]`, `[^a]`, `[a-z]` and `\` escapes, byte-wise.

/// Whether `s` matches `pattern`, like Redis's `stringmatchlen` (case-sensitive).
///
/// ```
/// use kuai_server::glob::matches;
/// assert!(matches(b"h?llo*", b"hello world"));
/// assert!(matches(b"h[^e]llo", b"hallo"));
/// assert!(!matches(b"h[a-b]llo", b"hello"));
/// ```
pub fn matches(pattern: &[u8], s: &[u8]) -> bool {
    let mut budget = 10_000_000usize;
    match_rec(pattern, s, 0, &mut budget)
}

fn match_rec(mut p: &[u8], mut s: &[u8], depth: usize, budget: &mut usize) -> bool {
    // Redis bounds the recursion; a pathological pattern simply fails.
    if depth > 1000 {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_rec(&p[1..], s, depth + 1, budget) {
                        return true;
                    }
                    if *budget == 0 {
                        return false;
                    }
                    s = &s[1..];
                }
                return false;
            }
            b'?' => {
                s = &s[1..];
            }
            b'[' => {
                p = &p[1..];
                let not = p.first() == Some(&b'^');
                if not {
                    p = &p[1..];
                }
                let mut matched = false;
                loop {
                    if p.is_empty() {
                        // Unterminated class: Redis steps back onto the last byte.
                        break;
                    }
                    if p[0] == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if p[0] == s[0] {
                            matched = true;
                        }
                    } else if p[0] == b']' {
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut lo, mut hi) = (p[0], p[2]);
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        if s[0] >= lo && s[0] <= hi {
                            matched = true;
                        }
                        p = &p[2..];
                    } else if p[0] == s[0] {
                        matched = true;
                    }
                    if p.len() == 1 {
                        break;
                    }
                    p = &p[1..];
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if p[0] != s[0] {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if c != s[0] {
                    return false;
                }
                s = &s[1..];
            }
        }
        if !p.is_empty() {
            p = &p[1..];
        }
        if s.is_empty() {
            while !p.is_empty() && p[0] == b'*' {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn cases() {
        assert!(
            !matches(b"*", b""),
            "Redis quirk: KEYS/SCAN special-case a lone *"
        );
        assert!(matches(b"*", b"abc"));
        assert!(matches(b"a*", b"a"));
        assert!(matches(b"a*c", b"abbbc"));
        assert!(!matches(b"a*c", b"abbb"));
        assert!(matches(b"k\\*", b"k*"));
        assert!(!matches(b"k\\*", b"kx"));
        assert!(matches(b"[abc]x", b"bx"));
        assert!(!matches(b"?", b""));
        assert!(matches(b"**a**", b"xxa"));
        assert!(!matches(b"[", b"a"));
        let _ = matches(b"[^", b"a");
        assert!(!matches(b"*a*a*a*a*a*a*a*a*a*a*b", &[b'a'; 60]));
    }
}
