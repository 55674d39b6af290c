//! Small matchers the conditions share: `*` globs over ids, derivation path patterns, and
//! address comparison per chain.

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none too) and
/// every other character matches itself.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The first BIP-32 hardened index.
pub(crate) const HARDENED: u32 = 1 << 31;

/// One component of a derivation path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathPart {
    /// This index exactly.
    Index(u32),
    /// Any one index.
    Any,
    /// Any number of indices (zero too); only last.
    Rest,
}

/// A derivation path pattern: `m`, then `/`-separated components: a number below 2^31, `*`
/// (any one component) or, last, `**` (any number of components). Hardened components are
/// refused: keyrack derives non-hardened children only, so they could never match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathPattern {
    pub(crate) text: String,
    parts: Vec<PathPart>,
}

impl PathPattern {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut it = text.split('/');
        if it.next() != Some("m") {
            return Err(format!(
                "derivation path pattern '{text}' must start with 'm' (the root key is \"m\")"
            ));
        }
        let comps: Vec<&str> = it.collect();
        let mut parts = Vec::with_capacity(comps.len());
        for (i, c) in comps.iter().enumerate() {
            let part = match *c {
                "*" => PathPart::Any,
                "**" if i + 1 == comps.len() => PathPart::Rest,
                "**" => {
                    return Err(format!(
                        "derivation path pattern '{text}': '**' may only be the last component"
                    ))
                }
                c => {
                    if c.ends_with(['\'', 'h']) {
                        return Err(format!(
                            "derivation path pattern '{text}': '{c}' is hardened, and keyrack \
                             derives non-hardened children only (a request's path has indices \
                             below 2^31), so it could never match"
                        ));
                    }
                    let digits = c;
                    let index: u32 = digits
                        .parse()
                        .ok()
                        .filter(|&n: &u32| n < HARDENED && !digits.starts_with('+'))
                        .ok_or_else(|| {
                            format!(
                                "derivation path pattern '{text}': '{c}' is not an index below 2^31, \
                                 '*' or '**'"
                            )
                        })?;
                    PathPart::Index(index)
                }
            };
            parts.push(part);
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    pub(crate) fn matches(&self, path: &[u32]) -> bool {
        let mut i = 0;
        for part in &self.parts {
            match part {
                PathPart::Rest => return true,
                PathPart::Any if i < path.len() => i += 1,
                PathPart::Index(n) if path.get(i) == Some(n) => i += 1,
                _ => return false,
            }
        }
        i == path.len()
    }
}

/// A derivation path as text: `m/44'/60'/0'/0/5`.
pub(crate) fn path_text(path: &[u32]) -> String {
    let mut s = String::from("m");
    for &i in path {
        if i >= HARDENED {
            s.push_str(&format!("/{}'", i - HARDENED));
        } else {
            s.push_str(&format!("/{i}"));
        }
    }
    s
}

/// Whether two addresses (or token ids) are the same on `chain`: EVM compares
/// case-insensitively (EIP-55 checksums are only letter case), every other chain exactly.
pub(crate) fn same_address(chain: &str, a: &str, b: &str) -> bool {
    if chain == "evm" {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Parses a concrete derivation path (`m`, `m/44/60/0/0/5`).
pub(crate) fn parse_path(text: &str) -> Result<Vec<u32>, String> {
    let p = PathPattern::parse(text)?;
    p.parts
        .iter()
        .map(|part| match part {
            PathPart::Index(i) => Ok(*i),
            _ => Err(format!(
                "'{text}' is a pattern: a request's derivation path has only indices"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("hot-*", "hot-1"));
        assert!(glob_match("hot-*", "hot-"));
        assert!(!glob_match("hot-*", "cold-1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn derivation_patterns() {
        let p = PathPattern::parse("m/0/*").unwrap();
        assert!(p.matches(&[0, 7]));
        assert!(!p.matches(&[0]));
        assert!(!p.matches(&[0, 7, 1]));
        assert!(!p.matches(&[1, 7]));
        let root = PathPattern::parse("m").unwrap();
        assert!(root.matches(&[]));
        assert!(!root.matches(&[0]));
        let rest = PathPattern::parse("m/44/**").unwrap();
        assert!(rest.matches(&[44]));
        assert!(rest.matches(&[44, 0, 1]));
        assert!(!rest.matches(&[45]));
        for hardened in ["m/44'/0", "m/44h/*", "m/0/1'"] {
            let e = PathPattern::parse(hardened).unwrap_err();
            assert!(e.contains("hardened"), "{e}");
        }
        assert!(PathPattern::parse("0/1").is_err());
        assert!(PathPattern::parse("m/**/1").is_err());
        assert!(PathPattern::parse("m/x").is_err());
        assert!(PathPattern::parse("m/2147483648").is_err());
        assert_eq!(path_text(&[44 | HARDENED, 0, 5]), "m/44'/0/5");
    }
}
